"""The embedded default: one SQLite file, in WAL mode with synchronous=FULL.

Two connections, each used only by a thread of its own, off the event loop:
- the writer applies commits in the order they were asked for, in groups: the commits asked for while it was
  busy with the last group go into one IMMEDIATE transaction, each inside a savepoint of its own, so that a
  change refused (a key to consume gone) leaves the others whole, and one fsync makes them all durable. Each is
  atomic and, once its `commit` returns, durable: a SIGKILL (or a power cut) at any moment leaves either the
  whole change or none of it. A group costs one hop to the writer's thread and one fsync instead of one each,
  which under load is most of a commit's cost. If a change fails inside a group (a full disk, a record that
  cannot be encoded), the group is rolled back and its changes are applied one transaction each, so that the
  error reaches only the commit that caused it;
- the reader answers `get` and `keys`. In WAL mode a reader sees the last committed state while a writer (this
  process's or another's) holds the write lock, so a write waiting for that lock never holds up the token
  checks behind it.

A write waits for the lock at most `busy_seconds` in all, its time queued behind other writes included. The
default, three seconds, is hundreds of times what a healthy writer holds the lock for (a few small rows and an
fsync), and short enough that a client gets the 503 and its Retry-After before its own timeout (five seconds
is common) gives up on the request.

Every error of the driver (locked, full, I/O, a damaged file) becomes StoreUnavailable, as does any call on a
closed store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson

from .base import Commit, Record, Store
from .errors import StoreUnavailable

T = TypeVar("T")
BUSY_SECONDS = 3.0
MAX_VARIABLES = 900  # keys read in one statement (SQLite builds before 3.32 take at most 999 parameters)
SWEEP_EVERY = 500  # commits between two clear-outs of expired records
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
"""
LIVE = "(expires_at IS NULL OR expires_at > ?)"
WAITED_OUT = "sqlite: the write waited its whole busy timeout behind other writes"


def prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[low, high) such that `low <= key < high` exactly when key starts with `prefix` (high None: no bound).

    SQLite compares TEXT as UTF-8 bytes, which orders strings like their code points, so this range is an exact,
    case-sensitive prefix match that also uses the primary key's index. (LIKE ignores ASCII case; GLOB has
    wildcards of its own.)
    """
    stem = prefix.rstrip(chr(sys.maxunicode))  # nothing sorts after the last code point: carry to the left
    if not stem:
        return prefix, None
    after = ord(stem[-1]) + 1
    if 0xD800 <= after <= 0xDFFF:  # surrogates cannot be stored: the next character that can
        after = 0xE000
    return prefix, stem[:-1] + chr(after)


def _prefix_clause(prefix: str) -> tuple[str, tuple[str, ...]]:
    low, high = prefix_bounds(prefix)
    return ("key >= ? AND key < ?", (low, high)) if high is not None else ("key >= ?", (low,))


def _unavailable(exc: sqlite3.Error) -> StoreUnavailable:
    # SQLite's messages name conditions ("database is locked"), never values.
    name = getattr(exc, "sqlite_errorname", None)
    return StoreUnavailable(f"sqlite: {exc}" + (f" ({name})" if name else ""))


@dataclass(eq=False)
class _Pending:
    """A commit waiting for the writer."""

    change: Commit
    deadline: float  # on the store's clock: past it, the write gives up rather than wait for the lock
    done: asyncio.Future[bool]


class _Lane:
    """One connection and the one thread that opens, uses and closes it."""

    def __init__(self, name: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        try:
            self._db: sqlite3.Connection | None = self._executor.submit(connect).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        if db is None:
            raise StoreUnavailable("the store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, db)
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        db, self._db = self._db, None  # calls from now on are refused; those queued run first
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)

    def close_blocking(self) -> None:
        """Close from outside an event loop (a constructor that failed half-way)."""
        db, self._db = self._db, None
        if db is not None:
            self._executor.submit(db.close).result()
        self._executor.shutdown(wait=True)


class SQLiteStore(Store):
    def __init__(
        self,
        path: str | Path,
        busy_seconds: float = BUSY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        if self.path in ("", ":memory:"):
            # Each connection would get a database of its own: the reader would never see the writer's.
            raise ValueError("the sqlite store needs a file path: use the memory backend for a throwaway store")
        self.busy_seconds = busy_seconds
        self._clock = clock  # measures how long a write has waited (tests drive it)
        # Wall-clock seconds, for TTLs: records outlive the process, so their expiry cannot be monotonic.
        self._now = now
        self._writes = 0  # touched only on the writer's thread
        self._queue: list[_Pending] = []  # commits not yet handed to the writer
        self._flusher: asyncio.Task[None] | None = None
        try:
            self._writer = _Lane("bastion-sqlite-write", self._open_writer)
            try:
                self._reader = _Lane("bastion-sqlite-read", self._open_reader)
            except BaseException:
                self._writer.close_blocking()
                raise
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc
        except OSError as exc:  # its folder cannot be made (a file in the way, no permission)
            raise StoreUnavailable(f"sqlite: cannot create the folder for {self.path} ({exc.strerror})") from exc

    def _open_writer(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={self._busy_ms(self.busy_seconds)}")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                # Without WAL, readers would wait behind writers: refuse rather than stall under load.
                raise StoreUnavailable(f"sqlite: {self.path} cannot use WAL journaling (put it on a local disk)")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _open_reader(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={self._busy_ms(self.busy_seconds)}")
            db.execute("PRAGMA query_only=ON")
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _busy_ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    async def get(self, key: str) -> Record | None:
        def read(db: sqlite3.Connection) -> Record | None:
            row = db.execute(f"SELECT value FROM records WHERE key = ? AND {LIVE}", (key, self._now())).fetchone()
            return orjson.loads(row[0]) if row else None

        return await self._reader.run(read)

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        wanted = list(dict.fromkeys(keys))[:MAX_VARIABLES]
        if len(wanted) < len(set(keys)):  # more keys than one statement takes: one statement each
            return await super().get_many(keys)

        def read(db: sqlite3.Connection) -> dict[str, bytes]:
            marks = ",".join("?" * len(wanted))
            rows = db.execute(
                f"SELECT key, value FROM records WHERE key IN ({marks}) AND {LIVE}", (*wanted, self._now())
            ).fetchall()
            return dict(rows)

        found = await self._reader.run(read) if wanted else {}
        return [orjson.loads(found[key]) if key in found else None for key in keys]

    async def keys(self, prefix: str) -> list[str]:
        clause, bounds = _prefix_clause(prefix)

        def read(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                f"SELECT key FROM records WHERE {clause} AND {LIVE} ORDER BY key", (*bounds, self._now())
            ).fetchall()
            return [row[0] for row in rows]

        return await self._reader.run(read)

    async def commit(self, change: Commit) -> bool:
        change.check()
        loop = asyncio.get_running_loop()
        pending = _Pending(change, self._clock() + self.busy_seconds, loop.create_future())
        self._queue.append(pending)
        if self._flusher is None or self._flusher.done():  # done: its loop went away before it could say so
            self._flusher = loop.create_task(self._flush())
        return await pending.done

    async def _flush(self) -> None:
        """Hand the writer what has been asked for, group after group, until nothing is left."""
        batch: list[_Pending] = []
        try:
            while self._queue:
                batch = [p for p in self._queue if not p.done.cancelled()]  # nobody waits for those: skip them
                self._queue = []
                if not batch:
                    continue
                try:
                    outcomes = await self._writer.run(functools.partial(self._write, batch=batch))
                except StoreUnavailable as exc:  # the store was closed
                    outcomes = [StoreUnavailable(str(exc)) for _ in batch]
                except Exception as exc:  # a bug: its callers hear of it rather than wait for ever
                    outcomes = [exc for _ in batch]
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.done.done():
                        continue
                    if isinstance(outcome, BaseException):
                        pending.done.set_exception(outcome)
                    else:
                        pending.done.set_result(outcome)
        except asyncio.CancelledError:  # the loop is going away: nobody will hear an answer
            for pending in (*batch, *self._queue):
                pending.done.cancel()
            raise
        finally:
            self._flusher = None

    def _write(self, db: sqlite3.Connection, batch: list[_Pending]) -> list[bool | Exception]:
        """On the writer's thread: each change's outcome (applied, refused, or the error for its caller)."""
        now = self._clock()
        ready = [p for p in batch if p.deadline > now]
        outcomes: dict[int, bool | Exception] = {
            id(p): StoreUnavailable(WAITED_OUT) for p in batch if p.deadline <= now
        }
        if ready:
            if db.in_transaction:  # a rollback that failed earlier: start clean
                _roll_back(db)
            try:
                db.execute(f"PRAGMA busy_timeout={self._busy_ms(min(p.deadline for p in ready) - now)}")
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:  # no lock (or no file): nothing was applied, each of them waited for it
                outcomes.update((id(p), _unavailable(exc)) for p in ready)
                return [outcomes[id(p)] for p in batch]
            try:
                applied = [self._apply_alone(db, p.change) for p in ready]
                db.execute("COMMIT")
                outcomes.update((id(p), done) for p, done in zip(ready, applied, strict=True))
            except Exception as exc:
                _roll_back(db)
                if len(ready) == 1:
                    outcomes[id(ready[0])] = _unavailable(exc) if isinstance(exc, sqlite3.Error) else exc
                else:  # one transaction each: the error reaches only the change that caused it
                    outcomes.update((id(p), self._write(db, [p])[0]) for p in ready)
        return [outcomes[id(p)] for p in batch]

    def _apply_alone(self, db: sqlite3.Connection, change: Commit) -> bool:
        """One change of a group, inside a savepoint: all of it, or (refused) none of it."""
        db.execute("SAVEPOINT change")
        applied = self._apply(db, change)
        if not applied:
            db.execute("ROLLBACK TO change")
        db.execute("RELEASE change")
        return applied

    def _apply(self, db: sqlite3.Connection, change: Commit) -> bool:
        """The change inside an open transaction; False if a key to consume is missing or one to create is present
        (the caller rolls back)."""
        now = self._now()
        for key in change.create:  # the write lock is held: nobody can write it between this check and ours
            if db.execute(f"SELECT 1 FROM records WHERE key = ? AND {LIVE}", (key, now)).fetchone():
                return False
        for key in change.consume:
            if db.execute(f"DELETE FROM records WHERE key = ? AND {LIVE}", (key, now)).rowcount != 1:
                return False
        db.executemany("DELETE FROM records WHERE key = ?", [(k,) for k in change.delete])
        for prefix in change.delete_prefix:
            clause, bounds = _prefix_clause(prefix)
            db.execute(f"DELETE FROM records WHERE {clause}", bounds)
        db.executemany(
            "INSERT OR REPLACE INTO records (key, value, expires_at) VALUES (?, ?, ?)",
            [
                (key, orjson.dumps(record), now + ttl if ttl is not None else None)
                for key, (record, ttl) in (*change.put.items(), *change.create.items())
            ],
        )
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            # Expired records are invisible already; clear them out now and then, inside this transaction so
            # that a failure here cannot turn a committed change into an error.
            db.execute("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        return True

    async def close(self) -> None:
        if self._flusher is not None:  # commits asked for before closing are applied
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flusher)
        await self._reader.close()
        await self._writer.close()


def _roll_back(db: sqlite3.Connection) -> None:
    # If this fails too, the error being raised says more, and the next write rolls back before it begins.
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
