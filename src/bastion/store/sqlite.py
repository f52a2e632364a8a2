"""The embedded default: one SQLite file, in WAL mode with synchronous=FULL.

A commit is one IMMEDIATE transaction, so it is atomic and, once `commit` returns, durable: a SIGKILL (or a
power cut) at any moment leaves either the whole change or none of it. All database work runs on one
dedicated thread, off the event loop, in the order it was asked for.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

from .base import Commit, Record, Store

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
"""


def _escape_like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SQLiteStore(Store):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-sqlite")
        self._db: sqlite3.Connection | None = None
        self._commits = 0
        self._executor.submit(self._open).result()

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(SCHEMA)
        self._db = db

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        assert db is not None, "store is closed"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, db)

    async def get(self, key: str) -> Record | None:
        def read(db: sqlite3.Connection) -> Record | None:
            row = db.execute(
                "SELECT value FROM records WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, time.time()),
            ).fetchone()
            return orjson.loads(row[0]) if row else None

        return await self._run(read)

    async def commit(self, change: Commit) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            now = time.time()
            db.execute("BEGIN IMMEDIATE")
            try:
                for key in change.consume:
                    deleted = db.execute(
                        "DELETE FROM records WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)", (key, now)
                    ).rowcount
                    if deleted != 1:
                        db.execute("ROLLBACK")
                        return False
                db.executemany("DELETE FROM records WHERE key = ?", [(k,) for k in change.delete])
                for prefix in change.delete_prefix:
                    db.execute("DELETE FROM records WHERE key LIKE ? ESCAPE '\\'", (_escape_like(prefix) + "%",))
                db.executemany(
                    "INSERT OR REPLACE INTO records (key, value, expires_at) VALUES (?, ?, ?)",
                    [
                        (key, orjson.dumps(record), now + ttl if ttl is not None else None)
                        for key, (record, ttl) in change.put.items()
                    ],
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._commits += 1
            if self._commits % 500 == 0:  # expired records are invisible; clear them out now and then
                db.execute("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
            return True

        return await self._run(write)

    async def keys(self, prefix: str) -> list[str]:
        def read(db: sqlite3.Connection) -> list[str]:
            rows = db.execute(
                "SELECT key FROM records WHERE key LIKE ? ESCAPE '\\' AND (expires_at IS NULL OR expires_at > ?) "
                "ORDER BY key",
                (_escape_like(prefix) + "%", time.time()),
            ).fetchall()
            return [row[0] for row in rows]

        return await self._run(read)

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()

        if self._db is not None:
            await self._run(shut)
            self._db = None
        self._executor.shutdown(wait=True)
