"""The bus between processes on one SQLite file: two buses on one file stand for two processes (and one test
uses a real second process). What one publishes, the other hears, once; nobody hears its own events twice; a
bus that cannot read says so and, back, counts a new generation; the table stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion.store import StoreUnavailable, open_bus
from bastion.store.bus import GRANT_REVOKED, LocalBus
from bastion.store.bus.sqlite import PAYLOAD_LIMIT, SQLiteBus
from tests.clocks import WALL_START, Clock
from tests.store.racing import HANG, ROOT
from tests.waiting import eventually


class Heard:
    """What one bus's subscriber was told, in order."""

    def __init__(self, bus: SQLiteBus, topic: str = GRANT_REVOKED) -> None:
        self.events: list[dict] = []
        bus.subscribe(topic, self.events.append)

    async def until(self, count: int, what: str) -> None:
        async def enough() -> bool:
            return len(self.events) >= count

        await eventually(enough, what)


def rows(path: Path) -> list[tuple[int, bytes]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT id, body FROM bus_events ORDER BY id").fetchall()


@contextlib.asynccontextmanager
async def started(*buses: SQLiteBus) -> AsyncIterator[None]:
    try:
        for bus in buses:
            await bus.start()
        yield
    finally:
        for bus in buses:
            await bus.close()


async def test_an_event_published_by_one_is_heard_by_the_other_once(tmp_path):
    first, second = SQLiteBus(tmp_path / "bastion.db"), SQLiteBus(tmp_path / "bastion.db")
    async with started(first, second):
        assert first.healthy and second.healthy and first.generation == second.generation == 1
        here, there, other_topic = Heard(first), Heard(second), Heard(second, "something.else")
        await first.publish(GRANT_REVOKED, {"grant": "g1"})
        assert here.events == [{"grant": "g1"}]  # told before publish returned
        await there.until(1, "the other bus hearing the first event")
        await second.publish(GRANT_REVOKED, {"grant": "g2"})
        assert there.events == [{"grant": "g1"}, {"grant": "g2"}]
        # Rows are read in id order: once the first bus has heard g2, it has passed its own g1 row (and skipped it).
        await here.until(2, "the first bus hearing the answer")
        await first.publish(GRANT_REVOKED, {"grant": "g3"})
        await there.until(3, "the other bus hearing a last event")
        assert here.events == [{"grant": "g1"}, {"grant": "g2"}, {"grant": "g3"}]
        assert there.events == [{"grant": "g1"}, {"grant": "g2"}, {"grant": "g3"}]
        assert other_topic.events == []
        assert first.healthy and second.healthy and first.generation == second.generation == 1


async def test_a_bus_starting_up_hears_what_comes_after_not_what_came_before(tmp_path):
    first = SQLiteBus(tmp_path / "bastion.db")
    async with started(first):
        await first.publish(GRANT_REVOKED, {"grant": "before"})
        late = SQLiteBus(tmp_path / "bastion.db")
        heard = Heard(late)
        async with started(late):
            await first.publish(GRANT_REVOKED, {"grant": "after"})
            await heard.until(1, "the late bus hearing the event after its start")
            await first.publish(GRANT_REVOKED, {"grant": "last"})
            await heard.until(2, "and the next")
        assert heard.events == [{"grant": "after"}, {"grant": "last"}]


async def test_an_event_published_in_another_process_is_heard_here_and_the_other_way(tmp_path):
    path = tmp_path / "bastion.db"
    here = SQLiteBus(path)
    heard = Heard(here)
    peer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.store.sqlite_bus_peer", "bus", str(path),
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert peer.stdin is not None and peer.stdout is not None

    async def line() -> str:
        assert peer.stdout is not None
        return (await asyncio.wait_for(peer.stdout.readline(), HANG)).decode().strip()

    try:
        async with started(here):
            assert await line() == "ready"
            await here.publish(GRANT_REVOKED, {"grant": "from-here"})
            assert json.loads(await line()) == {"grant": "from-here"}
            peer.stdin.write(b'publish {"grant": "from-there"}\n')
            await peer.stdin.drain()
            assert json.loads(await line()) == {"grant": "from-there"}  # its own subscriber, told at once
            assert await line() == "published"
            await heard.until(2, "this process hearing the other's event")
            await here.publish(GRANT_REVOKED, {"grant": "last"})
            # The peer reads in id order: its own from-there row came before, and was not told a second time.
            assert json.loads(await line()) == {"grant": "last"}
            assert heard.events == [{"grant": "from-here"}, {"grant": "from-there"}, {"grant": "last"}]
            peer.stdin.write(b"\n")
            await peer.stdin.drain()
            assert await asyncio.wait_for(peer.wait(), HANG) == 0
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()


async def test_a_bus_that_cannot_read_says_so_and_counts_a_new_generation_when_back(tmp_path, caplog):
    """Another process holds the WAL index's read locks: polls fail (SQLite gives up on the lock after about
    10 s); the clock stands still, so healthy turns False through the failure itself, not staleness. Once the locks
    are let go, the bus hears again, one generation later, and what was published meanwhile is heard, not lost."""
    caplog.set_level(logging.WARNING, "bastion.bus")
    path = tmp_path / "bastion.db"
    first, second = SQLiteBus(path), SQLiteBus(path, clock=Clock(0.0))
    heard = Heard(second)
    async with started(first, second):
        generation = second.generation
        holder = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.store.sqlite_bus_peer", "lock", str(path),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert (await asyncio.wait_for(holder.stdout.readline(), HANG)).strip() == b"locked"
            publishing = asyncio.create_task(first.publish(GRANT_REVOKED, {"grant": "meanwhile"}))

            async def failed() -> bool:
                return any("cannot read" in record.getMessage() for record in caplog.records)

            await eventually(failed, "a poll failing on the lock")
            assert not second.healthy and second.generation == generation
        finally:
            holder.stdin.write(b"\n")
            await holder.stdin.drain()
            await asyncio.wait_for(holder.wait(), HANG)

        async def back() -> bool:
            return second.healthy

        await eventually(back, "the bus hearing again")
        assert second.generation == generation + 1
        await publishing
        await heard.until(1, "the event published during the outage")
        await first.publish(GRANT_REVOKED, {"grant": "after"})
        await heard.until(2, "an event after the outage")
        assert heard.events == [{"grant": "meanwhile"}, {"grant": "after"}]
        assert second.generation == generation + 1


async def test_what_cannot_be_written_now_is_written_once_the_file_can_be(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "bastion.bus")
    path = tmp_path / "bastion.db"
    first, second = SQLiteBus(path, busy_seconds=0.05), SQLiteBus(path)
    here, there = Heard(first), Heard(second)
    async with started(first, second):
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            await first.publish(GRANT_REVOKED, {"grant": "g1"})  # does not raise
            await first.publish(GRANT_REVOKED, {"grant": "g2"})
            assert here.events == [{"grant": "g1"}, {"grant": "g2"}] and rows(path) == []  # told here only

            # Both writes failed (each publish tries at once), with one warning; a task tries again every poll.
            assert caplog.text.count("publishing deferred") == 1
            assert first._retry is not None and not first._retry.done()
            assert second.healthy  # reading does not need the write lock
            other.execute("ROLLBACK")
        await there.until(2, "the deferred events, once written")
        assert there.events == [{"grant": "g1"}, {"grant": "g2"}] and len(rows(path)) == 2
        assert caplog.text.count("publishing deferred") == 1 and "deferred events are written" in caplog.text


async def test_a_bus_whose_last_read_is_too_old_is_not_healthy_until_it_reads_again(tmp_path):
    clock = Clock(0.0)
    bus = SQLiteBus(tmp_path / "bastion.db", clock=clock, stale_seconds=1.0)
    async with started(bus):
        assert bus.healthy and bus.generation == 1
        clock.now += 1.5  # as if no poll had completed for 1.5 s (a read stuck on a lock)
        assert not bus.healthy
        # The next poll reads, at the clock's time: healthy again, one generation later.

        async def back() -> bool:
            return bus.healthy

        await eventually(back, "the next poll")
        assert bus.generation == 2


async def test_the_table_keeps_only_recent_rows(tmp_path):
    path = tmp_path / "bastion.db"
    now = Clock(WALL_START)
    bus = SQLiteBus(path, now=now, keep_seconds=60, row_limit=5)
    async with started(bus):
        for n in range(8):
            await bus.publish(GRANT_REVOKED, {"grant": f"g{n}"})
        assert [id_ for id_, _ in rows(path)] == [4, 5, 6, 7, 8]  # the newest five
        now.now += 30
        await bus.publish(GRANT_REVOKED, {"grant": "g8"})
        assert [id_ for id_, _ in rows(path)] == [5, 6, 7, 8, 9]
        now.now += 31  # g4..g7 are 61 s old, g8 31 s
        await bus.publish(GRANT_REVOKED, {"grant": "g9"})
        assert [(id_, json.loads(body)["e"]) for id_, body in rows(path)] == [
            (9, {"grant": "g8"}),
            (10, {"grant": "g9"}),
        ]


async def test_rows_deleted_before_a_bus_read_them_count_as_an_outage(tmp_path):
    path = tmp_path / "bastion.db"
    first, second = SQLiteBus(path, row_limit=2), SQLiteBus(path, row_limit=2)
    heard = Heard(second)
    async with started(first, second):
        # The first publish writes g0; the others wait for it, then go in one transaction, which keeps the
        # newest two rows: g1 and g2 are deleted before any other process could read them.
        await asyncio.gather(*(first.publish(GRANT_REVOKED, {"grant": f"g{n}"}) for n in range(5)))
        await heard.until(2, "the rows that were left")

        async def recounted() -> bool:
            # The publisher too: a bus cannot tell whose rows were deleted, so it never guesses.
            return second.generation == first.generation == 2

        await eventually(recounted, "a new generation on both: the gap was seen")
        assert heard.events[-2:] == [{"grant": "g3"}, {"grant": "g4"}]
        assert {"grant": "g1"} not in heard.events and {"grant": "g2"} not in heard.events
        assert first.healthy and second.healthy


async def test_an_event_too_large_is_refused_before_anyone_is_told(tmp_path):
    path = tmp_path / "bastion.db"
    bus = SQLiteBus(path)
    heard = Heard(bus)
    async with started(bus):
        with pytest.raises(ValueError, match=f"larger than the {PAYLOAD_LIMIT} allowed"):
            await bus.publish(GRANT_REVOKED, {"grant": "g" * PAYLOAD_LIMIT})
        assert heard.events == [] and rows(path) == []
        await bus.publish(GRANT_REVOKED, {"grant": "g" * (PAYLOAD_LIMIT - 100)})  # under the bound: carried
        assert len(rows(path)) == 1


async def test_rows_that_are_not_events_are_skipped(tmp_path, caplog):
    path = tmp_path / "bastion.db"
    first, second = SQLiteBus(path), SQLiteBus(path)
    heard = Heard(second)
    async with started(first, second):
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            for body in (b"not json", b"[1]", b'{"s": "x", "t": "grant.revoked", "e": "no object"}', b'{"t": 1}'):
                db.execute("INSERT INTO bus_events (at, body) VALUES (?, ?)", (time.time(), body))
        await first.publish(GRANT_REVOKED, {"grant": "after"})
        await heard.until(1, "a real event after the junk")
        assert heard.events == [{"grant": "after"}] and second.healthy and second.generation == 1
        assert "not a Bastion event" in caplog.text and "not json" not in caplog.text


async def test_a_file_that_is_not_a_database_is_refused_at_start(tmp_path):
    path = tmp_path / "bastion.db"
    path.write_bytes(b"this is not a database" * 100)
    bus = SQLiteBus(path)
    with pytest.raises(StoreUnavailable, match="sqlite bus"):
        await bus.start()
    assert not bus.healthy
    await bus.close()


def test_open_bus_gives_the_file_bus_only_for_a_file(tmp_path):
    bus = open_bus("sqlite", path=str(tmp_path / "bastion.db"))
    assert type(bus) is SQLiteBus and bus.path == str(tmp_path / "bastion.db")
    assert type(open_bus("sqlite")) is LocalBus and type(open_bus("memory", path="x.db")) is LocalBus
    with pytest.raises(ValueError, match="needs a file path"):
        SQLiteBus(":memory:")
    assert not (tmp_path / "bastion.db").exists()  # building opens nothing: start() does, on the serving loop
