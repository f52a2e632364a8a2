"""The bus between processes sharing one SQLite file (`bastion serve --workers N`, or several servers on one
machine): events are rows of a small table in that file, and every process polls it.

- `publish` tells this process's subscribers at once, then inserts `{"s": sender, "t": topic, "e": event}` (at
  most PAYLOAD_LIMIT bytes: larger events are refused before anyone is told) into `bus_events`, whose id is
  AUTOINCREMENT: never reused, even once older rows are gone. SQLite has one writer at a time and an id is taken
  inside the writing transaction, so ids become visible in order and without gaps: "every row after the last id
  I read" misses nothing, and a gap means rows were deleted before this process read them (it counts as an
  outage, below). What cannot be written now (the file is locked past BUSY_SECONDS) waits in an outbox (the
  newest OUTBOX_LIMIT events, in order) and is tried again every poll interval; `publish` does not raise for it.
- Every POLL_SECONDS a thread of the bus's own reads the rows after the last id this process saw (a process
  starting up begins at the newest id: it replays nothing), skips its own by the sender id, and hands the rest
  to the serving loop, which tells local subscribers. When nothing was published, a poll is one lookup in
  `sqlite_sequence` (the table's newest id) and does not wake the serving loop at all.
- The table is bounded: each insert deletes, oldest first, rows older than KEEP_SECONDS and all but the newest
  ROW_LIMIT.
- `healthy` is False before start, while polls fail (locked, unreadable, damaged), and while the last
  successful one is older than STALE_SECONDS (a read stuck on a lock). The poll that ends an outage, or finds
  rows deleted before it read them (this bus cannot tell whose, so the publisher counts it too), increments
  `generation`: caches from before must not be trusted. Rows outlive an outage shorter than KEEP_SECONDS, so
  what was published meanwhile is still heard.

Two connections of its own, never the store's: the poller's, and a writer's on a thread of its own (so that a
publish waiting for the write lock never holds up hearing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

from ..errors import StoreUnavailable
from ..sqlite import BUSY_SECONDS, _Lane
from .base import Bus, Handler
from .local import LocalBus

log = logging.getLogger("bastion.bus")

# A tenth of a second: a revocation reaches every process within about that (the PostgreSQL and Redis buses
# take tens of milliseconds), for an idle poll of about 0.2 ms of CPU: 0.2% of a core per process (docs/storage.md).
POLL_SECONDS = 0.1
STALE_SECONDS = 1.0  # ten polls: past this without a completed read, events may be missed
KEEP_SECONDS = 60.0  # far longer than any healthy poll gap, so that no process misses a row
ROW_LIMIT = 1000
PAYLOAD_LIMIT = 7900  # as on the PostgreSQL bus, so that an event one backend carries, every backend carries
OUTBOX_LIMIT = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_events_at ON bus_events (at);
"""
NEWEST = "SELECT seq FROM sqlite_sequence WHERE name = 'bus_events'"


class SQLiteBus(Bus):
    def __init__(
        self,
        path: str | Path,
        *,
        poll_seconds: float = POLL_SECONDS,
        stale_seconds: float = STALE_SECONDS,
        keep_seconds: float = KEEP_SECONDS,
        row_limit: int = ROW_LIMIT,
        busy_seconds: float = BUSY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        if self.path in ("", ":memory:"):
            raise ValueError("the sqlite bus needs a file path: a private in-memory database reaches no one")
        self.poll_seconds = poll_seconds
        self.stale_seconds = stale_seconds
        self.keep_seconds = keep_seconds
        self.row_limit = row_limit
        self.busy_seconds = busy_seconds
        self._clock = clock  # monotonic: how long since the last successful poll (tests drive it)
        self._now = now  # wall-clock: rows' ages, compared across processes
        self.sender = secrets.token_hex(8)  # tells this process's own rows apart
        self._local = LocalBus()  # this process's subscribers
        self._writer: _Lane | None = None
        self._sending = asyncio.Lock()
        self._outbox: deque[bytes] = deque(maxlen=OUTBOX_LIMIT)
        self._retry: asyncio.Task[None] | None = None
        self._deferring = False  # the last write failed: what is published waits in the outbox
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        # Written by the poller thread only (after start): the newest id read, the monotonic time of the last
        # successful poll (None: not listening), whether the last poll failed.
        self._last = 0
        self._heard_at: float | None = None
        self._failing = False

    @property
    def healthy(self) -> bool:
        """Whether this process is hearing the others' events right now."""
        heard_at = self._heard_at
        return heard_at is not None and not self._failing and self._clock() - heard_at <= self.stale_seconds

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._local.subscribe(topic, handler)

    # --- starting and stopping ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the table, begin at the newest id and start polling; StoreUnavailable if the file cannot be
        used."""
        if self._poller is not None:
            return
        try:
            self._writer = self._writer or _Lane("bastion-bus-write", self._open_writer)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"sqlite bus: cannot open {self.path} ({exc})") from exc
        await self._writer.run(lambda db: db.executescript(SCHEMA))
        loop = asyncio.get_running_loop()
        ready: Future[None] = Future()
        self._stop.clear()
        self._poller = threading.Thread(target=self._listen, args=(loop, ready), name="bastion-bus-poll", daemon=True)
        self._poller.start()
        try:
            await asyncio.wrap_future(ready)
        except (sqlite3.Error, OSError) as exc:
            await self._join()
            raise StoreUnavailable(f"sqlite bus: cannot read {self.path} ({exc})") from exc
        self.generation += 1
        await self._flush()

    def _open_writer(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={max(1, round(self.busy_seconds * 1000))}")
            # The store sets WAL too (it is a property of the file): without it, these polls would hold up writes.
            if str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower() != "wal":
                raise StoreUnavailable(f"sqlite bus: {self.path} cannot use WAL journaling")
            # An event need not survive a power cut (nobody would hear it): no fsync of its own per publish.
            db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def _open_reader(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            # A read in WAL mode waits only for another process's recovery or exclusive lock: give up within a
            # couple of polls and say so (healthy False).
            db.execute(f"PRAGMA busy_timeout={max(1, round(self.poll_seconds * 2000))}")
            db.execute("PRAGMA query_only=ON")
            row = db.execute(NEWEST).fetchone()
        except BaseException:
            db.close()
            raise
        self._last = int(row[0]) if row else 0  # begin at the newest: history is not replayed
        return db

    async def close(self) -> None:
        await self._join()
        retry, self._retry = self._retry, None
        if retry is not None:
            retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retry
        async with self._sending:  # a publish in progress finishes its write first
            writer, self._writer = self._writer, None
        if writer is not None:
            await writer.close()

    async def _join(self) -> None:
        poller, self._poller = self._poller, None
        self._stop.set()
        if poller is not None:
            await asyncio.get_running_loop().run_in_executor(None, poller.join)
        self._heard_at = None

    # --- publishing ---------------------------------------------------------------------------------------------
    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        body = orjson.dumps({"s": self.sender, "t": topic, "e": event})
        if len(body) > PAYLOAD_LIMIT:
            raise ValueError(f"bus: an event of {len(body)} bytes is larger than the {PAYLOAD_LIMIT} allowed")
        self._local.deliver(topic, event)
        self._outbox.append(body)
        await self._flush()

    async def _flush(self) -> None:
        """Write what waits to be written, oldest first, in one transaction; what cannot be written now is tried
        again every poll interval (by a task that exists only while something waits)."""
        async with self._sending:
            writer = self._writer
            if not self._outbox or writer is None:
                return
            bodies = list(self._outbox)
            try:
                await writer.run(lambda db: self._insert(db, bodies))
            except StoreUnavailable as exc:
                if not self._deferring:  # once per outage, not at every try
                    log.warning("sqlite bus: publishing deferred until the file can be written (%s)", exc)
                self._deferring = True
                if self._retry is None or self._retry.done():
                    self._retry = asyncio.get_running_loop().create_task(self._again(), name="bastion-bus-retry")
                return
            if self._deferring:
                log.warning("sqlite bus: the deferred events are written")
            self._deferring = False
            for _ in bodies:
                self._outbox.popleft()

    async def _again(self) -> None:
        while self._outbox and self._writer is not None:
            await asyncio.sleep(self.poll_seconds)
            await self._flush()

    def _insert(self, db: sqlite3.Connection, bodies: list[bytes]) -> None:
        if db.in_transaction:  # a rollback that failed earlier: start clean
            db.execute("ROLLBACK")
        db.execute("BEGIN IMMEDIATE")
        try:
            now = self._now()
            db.executemany("INSERT INTO bus_events (at, body) VALUES (?, ?)", [(now, body) for body in bodies])
            # Oldest first (by id, never leaving a hole a reader would take for a missed row): the rows up to the
            # newest that is too old, and all but the newest row_limit.
            db.execute(
                "DELETE FROM bus_events WHERE id <= (SELECT max(id) FROM bus_events WHERE at < ?)",
                (now - self.keep_seconds,),
            )
            db.execute(f"DELETE FROM bus_events WHERE id <= ({NEWEST}) - ?", (self.row_limit,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    # --- hearing (on the poller thread) -------------------------------------------------------------------------
    def _listen(self, loop: asyncio.AbstractEventLoop, ready: Future[None]) -> None:
        """The poller thread: its own connection; the serving loop is woken only when there is something to tell
        (an idle poll costs it nothing)."""
        try:
            db = self._open_reader()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        self._failing = False
        self._heard_at = self._clock()
        ready.set_result(None)
        try:
            while not self._stop.wait(self.poll_seconds):
                heard = self._poll(db)
                if heard:
                    with contextlib.suppress(RuntimeError):  # the loop closed under a bus not closed first
                        loop.call_soon_threadsafe(self._tell, heard)
        finally:
            db.close()

    def _poll(self, db: sqlite3.Connection) -> list[tuple[str, dict[str, Any]]]:
        try:
            heard, missed = self._read(db)
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("sqlite bus: cannot read (%s): events from other processes are missed until it can", exc)
            self._failing = True
            return []
        if not self.healthy or missed:
            why = "rows were deleted before it read them" if missed else "after an outage"
            log.warning("sqlite bus: hearing other processes again (%s): caches from before are dropped", why)
            self.generation += 1  # what was published meanwhile may never be told
        self._failing = False
        self._heard_at = self._clock()
        return heard

    def _tell(self, heard: list[tuple[str, dict[str, Any]]]) -> None:
        for topic, event in heard:
            self._local.deliver(topic, event)

    def _read(self, db: sqlite3.Connection) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """The others' events after the last id read, and whether some were deleted before this process read
        them (or the table was reset)."""
        row = db.execute(NEWEST).fetchone()
        newest = int(row[0]) if row else 0
        if newest == self._last:
            return [], False  # idle: nothing published since
        if newest < self._last:  # the table was emptied and its ids started again (a restored file)
            self._last = newest
            return [], True
        rows = db.execute("SELECT id, body FROM bus_events WHERE id > ? ORDER BY id", (self._last,)).fetchall()
        if not rows:  # all deleted (by age or count) before this process read them
            self._last = newest
            return [], True
        missed = rows[0][0] != self._last + 1
        heard = []
        for id_, body in rows:
            self._last = id_
            message = _message(body)
            if message is None:
                log.warning("sqlite bus: ignored a row that is not a Bastion event")
            elif message[0] != self.sender:
                heard.append(message[1:])
        return heard, missed


def _message(body: object) -> tuple[str, str, dict[str, Any]] | None:
    try:
        message = orjson.loads(body if isinstance(body, bytes | str) else b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    sender, topic, event = message.get("s"), message.get("t"), message.get("e")
    if isinstance(sender, str) and isinstance(topic, str) and isinstance(event, dict):
        return sender, topic, event
    return None
