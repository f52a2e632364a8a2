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


class WriterLate(WriterStarts):
    """Stands at 0 on the event loop; on the writer's thread, the first write reads 0 and every later one 100."""

    def __init__(self) -> None:
        super().__init__()
        self.writer_reads = 0

    def __call__(self) -> float:
        super().__call__()
        if not threading.current_thread().name.startswith("bastion-sqlite-write"):
            return 0.0
        self.writer_reads += 1
        return 0.0 if self.writer_reads == 1 else 100.0


async def test_a_write_queued_behind_a_blocked_one_gives_up_when_its_own_time_is_out(tmp_path):
    # The first write starts at t=0 and waits for the lock (50 ms); the second, asked for while it waits, starts
    # after it at t=100, past its deadline, and gives up without waiting a second time.
    clock = WriterLate()
    store = SQLiteStore(tmp_path / "bastion.db", busy_seconds=0.05, clock=clock)
    try:
        with locked(tmp_path / "bastion.db"):
            first = asyncio.ensure_future(store.commit(Commit().set("a", {})))
            await asyncio.to_thread(clock.started.wait)
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


async def test_commits_asked_for_together_share_one_transaction_each_whole_or_refused(tmp_path):
    store = SQLiteStore(tmp_path / "bastion.db")
    try:
        await store.commit(Commit().set("code:1", {"n": 1}))
        commits = [
            *(Commit(consume=["code:1"]).set(f"token:{i}", {"t": i}) for i in range(10)),
            *(Commit().set(f"other:{i}", {"o": i}) for i in range(10)),
            Commit().add("other:3", {"late": True}),  # already written by a commit before it in the group
        ]
        results = await asyncio.gather(*(store.commit(c) for c in commits))
        assert results == [True] + [False] * 9 + [True] * 10 + [False]
        assert await store.keys("") == sorted(["token:0", *(f"other:{i}" for i in range(10))])
        assert await store.get("other:3") == {"o": 3}
    finally:
        await store.close()


async def test_a_change_that_fails_inside_a_group_fails_alone(tmp_path):
    store = SQLiteStore(tmp_path / "bastion.db")
    try:
        await store.commit(Commit().set("code:1", {"n": 1}))
        good = [Commit(consume=["code:1"]).set("token:1", {"t": 1}), Commit().set("other:1", {"o": 1})]
        bad = Commit().set("broken", {"value": object()})  # cannot be encoded
        results = await asyncio.gather(
            store.commit(good[0]), store.commit(bad), store.commit(good[1]), return_exceptions=True
        )
        assert results[0] is True and results[2] is True
        assert isinstance(results[1], TypeError)
        assert await store.keys("") == ["other:1", "token:1"]
    finally:
        await store.close()


async def test_a_commit_given_up_before_the_writer_reaches_it_is_not_applied(tmp_path):
    clock = WriterStarts()
    store = SQLiteStore(tmp_path / "bastion.db", busy_seconds=60, clock=clock)
    try:
        with locked(tmp_path / "bastion.db"):
            first = asyncio.ensure_future(store.commit(Commit().set("a", {})))
            await asyncio.to_thread(clock.started.wait)  # the writer waits for the lock with the first
            second = asyncio.ensure_future(store.commit(Commit().set("b", {})))
            await asyncio.sleep(0)
            second.cancel()
        assert await first is True
        await store.commit(Commit().set("c", {}))  # queued after the cancelled one: it has been passed over
        assert await store.keys("") == ["a", "c"]
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
