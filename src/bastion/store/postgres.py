"""PostgreSQL: one store shared by every instance, durable, with exactly-once consumption across them.

One table, `bastion_records (key text COLLATE "C" PRIMARY KEY, value bytea, expires_at double precision)`:
values are the records' JSON as orjson writes it (bytea takes any record as it is; jsonb would refuse a
"\\u0000" in a string and parse what Bastion only stores), and keys compare byte by byte (COLLATE "C"), so a
prefix is a range of the primary key's index: exact, case-sensitive, no wildcard (`prefix_bounds`).

- A commit is one call of the function `bastion_commit` (migration 2): one round trip and one transaction,
  where BEGIN, a statement per part and COMMIT took four or more (a refresh's commit went from four round trips
  to one). Consume is `DELETE ... WHERE key = ANY(...) AND <live>`, rolled back unless it deleted every key. Two
  instances racing for one code both run that DELETE; PostgreSQL's row lock makes the second wait for the first
  and then find the row gone, so exactly one commit succeeds.
- Create is `INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired>` in the same transaction, rolled back unless
  it wrote every key: a live row is left alone, an expired one is replaced. A refused commit is rolled back
  inside the function (an exception block) and answers false: no error reaches the server's log.
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
# One round trip: the function applies the whole change, or (false) none of it.
COMMIT = (
    "SELECT bastion_commit($1::text[], $2::text[], $3::bytea[], $4::float8[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::text[], $10::bytea[], $11::float8[], $12::float8)"
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
    # A commit in one round trip. Consume and create run first, their keys sorted (the caller sorts them), so
    # that two commits wait for each other's rows rather than deadlock; a key missing (or present) raises, and
    # the handler rolls back everything done so far and answers false.
    f"""
    CREATE FUNCTION bastion_commit(
        consume_keys text[], create_keys text[], create_values bytea[], create_expiries float8[],
        delete_keys text[], range_lows text[], range_highs text[], tail_lows text[],
        put_keys text[], put_values bytea[], put_expiries float8[], at double precision
    ) RETURNS boolean LANGUAGE plpgsql AS $fn$
    DECLARE
        done integer;
    BEGIN
        IF cardinality(consume_keys) > 0 THEN
            DELETE FROM {TABLE} WHERE key = ANY(consume_keys) AND (expires_at IS NULL OR expires_at > at);
            GET DIAGNOSTICS done = ROW_COUNT;
            IF done <> cardinality(consume_keys) THEN
                RAISE EXCEPTION USING ERRCODE = 'BA001';
            END IF;
        END IF;
        IF cardinality(create_keys) > 0 THEN
            INSERT INTO {TABLE} AS r (key, value, expires_at)
                SELECT * FROM unnest(create_keys, create_values, create_expiries)
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
                WHERE r.expires_at IS NOT NULL AND r.expires_at <= at;
            GET DIAGNOSTICS done = ROW_COUNT;
            IF done <> cardinality(create_keys) THEN
                RAISE EXCEPTION USING ERRCODE = 'BA001';
            END IF;
        END IF;
        IF cardinality(delete_keys) > 0 THEN
            DELETE FROM {TABLE} WHERE key = ANY(delete_keys);
        END IF;
        IF cardinality(range_lows) > 0 THEN  -- each (low, high) pair: a range scan of the primary key
            DELETE FROM {TABLE} r USING unnest(range_lows, range_highs) AS p(low, high)
                WHERE r.key >= p.low AND r.key < p.high;
        END IF;
        IF cardinality(tail_lows) > 0 THEN
            DELETE FROM {TABLE} WHERE key >= (SELECT min(low) FROM unnest(tail_lows) AS t(low));
        END IF;
        IF cardinality(put_keys) > 0 THEN
            INSERT INTO {TABLE} (key, value, expires_at)
                SELECT * FROM unnest(put_keys, put_values, put_expiries)
                ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at;
        END IF;
        RETURN true;
    EXCEPTION WHEN SQLSTATE 'BA001' THEN
        RETURN false;
    END;
    $fn$;
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
        async with self._connection() as conn:
            applied: bool = await conn.fetchval(
                COMMIT,
                consume,
                create_keys,
                create_values,
                create_expiries,
                delete,
                [b[0] for b in bounded],
                [b[1] for b in bounded],
                unbounded,
                put_keys,
                values,
                expiries,
                now,
            )
        return applied

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
