"""PostgreSQL: one store shared by every instance, durable, with exactly-once consumption across them.

One table, `bastion_records (key text COLLATE "C" PRIMARY KEY, value bytea, expires_at double precision)`:
values are the records' JSON as orjson writes it (bytea takes any record as it is; jsonb would refuse a
"\\u0000" in a string and parse what Bastion only stores), and keys compare byte by byte (COLLATE "C"), so a
prefix is a range of the primary key's index: exact, case-sensitive, no wildcard (`prefix_bounds`).

- A commit is one transaction: consume is `DELETE ... WHERE key = ANY(...) AND <live> RETURNING key`, rolled
  back unless every key came back. Two instances racing for one code both run that DELETE; PostgreSQL's row
  lock makes the second wait for the first and then find the row gone, so exactly one commit succeeds.
- Create is `INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired> RETURNING key` in the same transaction,
  rolled back unless every key came back: a live row is left alone, an expired one is replaced.
- Expiry uses this instance's wall clock (`now`), as SQLite does: every instance's clock must be kept in step
  (NTP), which token lifetimes on several machines need anyway. A record past its expiry is invisible at once;
  a sweeper task clears expired rows every `sweep_seconds`, in small batches.
- The schema carries its version (`bastion_schema`); start() applies the migrations it lacks, in order, in one
  transaction under an advisory lock, so instances starting together migrate once.
- A pool of `pool_size` connections (asyncpg: the faster driver for this workload, see bench/store_drivers.py).
  Every wait is bounded: connecting and waiting for a pooled connection by `connect_timeout`, each statement by
  `statement_timeout` (on the client, and on the server too). When the database goes away the pool drops its
  dead connections and opens new ones once it is back: no restart needed.

Every driver, network or timeout error becomes StoreUnavailable, naming the error's kind, never a value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson

from .base import Commit, Record, Store
from .errors import StoreUnavailable
from .sqlite import prefix_bounds

log = logging.getLogger("bastion.store")

TABLE = "bastion_records"
LIVE = "(expires_at IS NULL OR expires_at > $2)"
GET = f"SELECT value FROM {TABLE} WHERE key = $1 AND {LIVE}"
GET_MANY = f"SELECT key, value FROM {TABLE} WHERE key = ANY($1::text[]) AND {LIVE}"
KEYS_BETWEEN = f"SELECT key FROM {TABLE} WHERE key >= $1 AND key < $3 AND {LIVE} ORDER BY key"
KEYS_FROM = f"SELECT key FROM {TABLE} WHERE key >= $1 AND {LIVE} ORDER BY key"
CONSUME = f"DELETE FROM {TABLE} WHERE key = ANY($1::text[]) AND {LIVE} RETURNING key"
DELETE = f"DELETE FROM {TABLE} WHERE key = ANY($1::text[])"
# One statement for every bounded prefix: each (low, high) pair is a range scan of the primary key.
DELETE_RANGES = (
    f"DELETE FROM {TABLE} r USING unnest($1::text[], $2::text[]) AS p(low, high)"
    " WHERE r.key >= p.low AND r.key < p.high"
)
DELETE_FROM = f"DELETE FROM {TABLE} WHERE key >= $1"
UPSERT = (
    f"INSERT INTO {TABLE} (key, value, expires_at) SELECT * FROM unnest($1::text[], $2::bytea[], $3::float8[])"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
)
# Writes each key unless a live row holds it; the keys it wrote come back. Two instances creating one key: the
# second's INSERT waits on the first's row until that transaction ends, then finds it (and writes nothing).
CREATE = (
    f"INSERT INTO {TABLE} AS r (key, value, expires_at)"
    " SELECT * FROM unnest($1::text[], $2::bytea[], $3::float8[])"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
    " WHERE r.expires_at IS NOT NULL AND r.expires_at <= $4 RETURNING key"
)
SWEEP = (
    f"DELETE FROM {TABLE} WHERE key IN"
    f" (SELECT key FROM {TABLE} WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2)"
)
SWEEP_BATCH = 1000

# Ordered and append-only: migration N takes a database at version N-1 to version N. Never edit one that shipped.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE {TABLE} (
        key text COLLATE "C" PRIMARY KEY,
        value bytea NOT NULL,
        expires_at double precision
    );
    CREATE INDEX {TABLE}_expiry ON {TABLE} (expires_at) WHERE expires_at IS NOT NULL;
    """,
)
# Held for the migration's transaction: one instance migrates while the others wait, then find nothing to do.
MIGRATION_LOCK = 0x62617374696F6E  # "bastion"


def _unavailable(exc: BaseException) -> StoreUnavailable:
    """StoreUnavailable naming what kind of failure this was; never the driver's message, which may quote values."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, TimeoutError):
        return StoreUnavailable("postgres: timed out")
    code = getattr(exc, "sqlstate", None)
    return StoreUnavailable(f"postgres: {type(exc).__name__}" + (f" ({code})" if code else ""))


class _Missing(Exception):
    """A key to consume was absent or expired, or one to create was present: roll the transaction back."""


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        now: Callable[[], float] = time.time,
        connect_timeout: float = 5.0,
        statement_timeout: float = 5.0,
        sweep_seconds: float = 60.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.url = url
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.sweep_seconds = sweep_seconds
        self._now = now  # wall-clock seconds, for TTLs (records outlive processes)
        self._pool: Any = None
        self._closed = False
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._pool is not None:
            return
        if self._closed:
            raise StoreUnavailable("postgres: the store is closed")
        import asyncpg  # only when this backend is configured

        statement_ms = str(max(1, round(self.statement_timeout * 1000)))
        try:
            pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    self.url,
                    # No floor of idle connections: asyncpg would keep restoring it during an outage, logging a
                    # traceback a second; connections are opened on demand (and kept while in use).
                    min_size=0,
                    max_size=self.pool_size,
                    timeout=self.connect_timeout,
                    command_timeout=self.statement_timeout,
                    server_settings={
                        "statement_timeout": statement_ms,
                        # A client that vanished mid-transaction must not hold its row locks for long.
                        "idle_in_transaction_session_timeout": statement_ms,
                        "application_name": "bastion",
                    },
                ),
                self.connect_timeout * 2,
            )
        except (TimeoutError, Exception) as exc:
            raise _unavailable(exc) from exc
        self._pool = pool
        try:
            await self.migrate()
        except BaseException:
            self._pool = None
            pool.terminate()
            raise
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="bastion-postgres-sweeper")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("postgres: the store is " + ("closed" if self._closed else "not started"))
        try:
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                yield conn
        except _Missing:
            raise
        except (TimeoutError, Exception) as exc:
            raise _unavailable(exc) from exc

    async def migrate(self) -> int:
        """Bring the schema to the latest version; the version it is at. Safe to run from many instances at once."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS bastion_schema (version integer NOT NULL)")
            version = await conn.fetchval("SELECT max(version) FROM bastion_schema") or 0
            if version > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"postgres: the database schema is at version {version}, newer than this Bastion knows"
                    f" ({len(MIGRATIONS)}): upgrade Bastion"
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                await conn.execute(MIGRATIONS[number - 1])
                await conn.execute("DELETE FROM bastion_schema")
                await conn.execute("INSERT INTO bastion_schema (version) VALUES ($1)", number)
                log.info("store schema migrated to version %d", number)
            return len(MIGRATIONS)

    async def get(self, key: str) -> Record | None:
        if "\0" in key:  # text cannot hold NUL: no such record can exist
            return None
        async with self._connection() as conn:
            value = await conn.fetchval(GET, key, self._now())
        return orjson.loads(value) if value is not None else None

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        wanted = [key for key in dict.fromkeys(keys) if "\0" not in key]
        if not wanted:
            return [None for _ in keys]
        async with self._connection() as conn:
            rows = await conn.fetch(GET_MANY, wanted, self._now())
        found = {row[0]: row[1] for row in rows}
        return [orjson.loads(found[key]) if key in found else None for key in keys]

    async def keys(self, prefix: str) -> list[str]:
        if "\0" in prefix:
            return []
        low, high = prefix_bounds(prefix)
        async with self._connection() as conn:
            if high is None:
                rows = await conn.fetch(KEYS_FROM, low, self._now())
            else:
                rows = await conn.fetch(KEYS_BETWEEN, low, self._now(), high)
        return [row[0] for row in rows]

    async def commit(self, change: Commit) -> bool:
        change.check()
        consume = sorted(set(change.consume))  # a fixed order: two commits lock their rows in the same order
        if any("\0" in key for key in consume):
            return False  # it cannot exist
        if any("\0" in key for key in (*change.put, *change.create)):
            raise ValueError("postgres: a storage key cannot contain NUL")
        delete = [key for key in change.delete if "\0" not in key]
        bounded: list[tuple[str, str]] = []
        unbounded: list[str] = []
        for prefix in change.delete_prefix:
            if "\0" in prefix:
                continue
            low, high = prefix_bounds(prefix)
            if high is None:
                unbounded.append(low)
            else:
                bounded.append((low, high))
        now = self._now()
        put_keys = list(change.put)
        values = [orjson.dumps(record) for record, _ in change.put.values()]
        expiries = [now + ttl if ttl is not None else None for _, ttl in change.put.values()]
        create_keys = sorted(change.create)  # a fixed order, as for consume
        created = [change.create[key] for key in create_keys]
        create_values = [orjson.dumps(record) for record, _ in created]
        create_expiries = [now + ttl if ttl is not None else None for _, ttl in created]
        try:
            async with self._connection() as conn, conn.transaction():
                if consume and len(await conn.fetch(CONSUME, consume, now)) != len(consume):
                    raise _Missing
                if create_keys:
                    written = await conn.fetch(CREATE, create_keys, create_values, create_expiries, now)
                    if len(written) != len(create_keys):
                        raise _Missing
                if delete:
                    await conn.execute(DELETE, delete)
                if bounded:
                    await conn.execute(DELETE_RANGES, [b[0] for b in bounded], [b[1] for b in bounded])
                for low in unbounded:
                    await conn.execute(DELETE_FROM, low)
                if put_keys:
                    await conn.execute(UPSERT, put_keys, values, expiries)
        except _Missing:
            return False
        return True

    async def sweep(self) -> int:
        """Delete expired rows now (in batches, each its own short transaction); how many."""
        total = 0
        while True:
            async with self._connection() as conn:
                status = await conn.execute(SWEEP, self._now(), SWEEP_BATCH)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < SWEEP_BATCH:
                return total

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except StoreUnavailable as exc:  # expired rows are invisible anyway: try again next time
                log.debug("store sweep skipped: %s", exc)

    async def close(self) -> None:
        self._closed = True
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.connect_timeout)
            except (TimeoutError, Exception):
                pool.terminate()  # a connection stuck on a dead server: drop it rather than wait
