"""A real SQLite file that cannot be written (locked by another connection, or full) or a closed store:
StoreUnavailable, nothing of the change applied, and reads that do not wait behind a blocked write."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.store import Commit, SQLiteStore, StoreUnavailable
from bastion.store.sqlite import prefix_bounds


@contextlib.contextmanager
def locked(path: Path, how: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """Another connection (another process, for SQLite) holding the write lock until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute(f"BEGIN {how}")
        yield other
        other.execute("ROLLBACK")
    finally:
        other.close()


async def fill(store: SQLiteStore) -> None:
    """Make the database full, as a full disk would: no page may be added, and no room is left in the pages
    there are. (max_page_count is per connection: it is set on the store's own writer.)"""

    def stuff(db: sqlite3.Connection) -> None:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count={pages}")
        size, n = 2048, 0
        while size:
            try:
                db.execute("INSERT INTO records (key, value) VALUES (?, ?)", (f"~filler:{n}", b"x" * size))
                n += 1
            except sqlite3.OperationalError as exc:
                assert "full" in str(exc)
                size //= 2

    await store._writer.run(stuff)


async def unfill(store: SQLiteStore) -> None:
    await store._writer.run(lambda db: db.execute("PRAGMA max_page_count=1073741823"))


def rows(path: Path) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT key, value, expires_at FROM records ORDER BY key").fetchall()


def still() -> float:
    """A clock that stands still: no write runs out of time while queued (a slow machine may take longer than a
    short busy timeout to start one); SQLite's own wait for a lock still ends after `busy_seconds`."""
    return 0.0


@pytest.fixture
async def store(tmp_path):
    opened = SQLiteStore(tmp_path / "bastion.db", busy_seconds=0.05, clock=still)
    yield opened
    await opened.close()


@pytest.mark.parametrize("how", ["IMMEDIATE", "EXCLUSIVE"])
async def test_a_locked_database_refuses_the_whole_commit_then_recovers(store, how):
    path = Path(store.path)
    await store.commit(Commit().set("code:1", {"n": 1}))
    before = rows(path)
    with locked(path, how):
        for change in (
            Commit().set("token:1", {"t": 1}),
            Commit(consume=["code:1"]).set("token:1", {"t": 1}),
            Commit(delete=["code:1"]),
            Commit(delete_prefix=["code:"]),
        ):
            with pytest.raises(StoreUnavailable, match=r"database is locked \(SQLITE_BUSY\)"):
                await store.commit(change)
        # Reading goes on: WAL readers do not wait for the lock.
        assert await store.get("code:1") == {"n": 1} and await store.keys("") == ["code:1"]
    assert rows(path) == before
    assert await store.commit(Commit(consume=["code:1"]).set("token:1", {"t": 1}))
    assert await store.keys("") == ["token:1"]


async def test_a_full_database_refuses_the_whole_commit_then_recovers(store):
    path = Path(store.path)
    await store.commit(Commit().set("code:1", {"n": 1}))
    await fill(store)
    before = rows(path)
    with pytest.raises(StoreUnavailable, match=r"database or disk is full \(SQLITE_FULL\)"):
        await store.commit(Commit(consume=["code:1"]).set("token:1", {"t": "x" * 500}).set("grant:1", {"g": 1}))
    assert rows(path) == before and await store.get("code:1") == {"n": 1}
    await unfill(store)
    assert await store.commit(Commit(consume=["code:1"]).set("token:1", {"t": "x" * 500}))
    assert await store.get("code:1") is None and await store.get("token:1") == {"t": "x" * 500}


class WriterStarts:
    """A clock for the store that reports when a write begins on the writer's thread (it reads the clock
    first thing there) and otherwise stands still, so that no write ever runs out of time."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def __call__(self) -> float:
        if threading.current_thread().name.startswith("bastion-sqlite-write"):
            self.started.set()
        return 0.0


async def test_a_read_completes_while_a_write_waits_for_the_lock(tmp_path):
    clock = WriterStarts()
    store = SQLiteStore(tmp_path / "bastion.db", busy_seconds=60, clock=clock)
    try:
        await store.commit(Commit().set("access:1", {"subject": "alice"}))
        clock.started.clear()
        with locked(tmp_path / "bastion.db"):
            write = asyncio.ensure_future(store.commit(Commit().set("grant:2", {"g": 2})))
            await asyncio.to_thread(clock.started.wait)  # the writer's thread is now inside that write
            assert await store.get("access:1") == {"subject": "alice"}
            assert await store.keys("access:") == ["access:1"]
            assert not write.done()  # the reads finished first, with the write still waiting for the lock
        assert await write is True
        assert await store.get("grant:2") == {"g": 2}
    finally:
        await store.close()


async def test_a_write_queued_behind_a_blocked_one_gives_up_when_its_own_time_is_out(tmp_path):
    # Both writes are asked for at t=0; the first reads t=0 when it starts and waits for the lock (50 ms); the
    # second starts after it, reads t=100, past its deadline, and gives up without waiting a second time.
    ticks = iter([0.0, 0.0, 0.0, 100.0])
    store = SQLiteStore(tmp_path / "bastion.db", busy_seconds=0.05, clock=lambda: next(ticks))
    try:
        with locked(tmp_path / "bastion.db"):
            first = asyncio.ensure_future(store.commit(Commit().set("a", {})))
            second = asyncio.ensure_future(store.commit(Commit().set("b", {})))
            results = await asyncio.gather(first, second, return_exceptions=True)
        assert [str(r) for r in results] == [
            "sqlite: database is locked (SQLITE_BUSY)",
            "sqlite: the write waited its whole busy timeout behind other writes",
        ]
        assert all(isinstance(r, StoreUnavailable) for r in results)
        assert rows(tmp_path / "bastion.db") == []
    finally:
        await store.close()


async def test_a_closed_store_is_unavailable_not_broken(tmp_path):
    store = SQLiteStore(tmp_path / "bastion.db")
    await store.commit(Commit().set("k", {}))
    await store.close()
    for call in (store.get("k"), store.keys(""), store.commit(Commit().set("j", {})), store.take("k")):
        with pytest.raises(StoreUnavailable, match="closed"):
            await call
    await store.close()  # twice is harmless


async def test_a_file_that_is_not_a_database_is_unavailable_at_start(tmp_path):
    path = tmp_path / "bastion.db"
    path.write_bytes(b"this is not an SQLite database, not even its header" * 100)
    with pytest.raises(StoreUnavailable, match="SQLITE_NOTADB"):
        SQLiteStore(path)
    assert path.read_bytes().startswith(b"this is not")


@pytest.mark.parametrize("path", [":memory:", ""])
def test_a_private_in_memory_database_is_refused(path):
    # Its reader and writer connections would each get a database of their own.
    with pytest.raises(ValueError, match="memory backend"):
        SQLiteStore(path)


@pytest.mark.parametrize(
    ("prefix", "bounds"),
    [
        ("grant:a", ("grant:a", "grant:b")),
        ("z\U0010ffff", ("z\U0010ffff", "{")),
        ("\U0010ffff\U0010ffff", ("\U0010ffff\U0010ffff", None)),
        ("k\ud7ff", ("k\ud7ff", "k\ue000")),
        ("", ("", None)),
    ],
)
def test_prefix_bounds(prefix, bounds):
    assert prefix_bounds(prefix) == bounds
