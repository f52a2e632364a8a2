"""Benchmark: the PostgreSQL store's workload on psycopg 3 (with psycopg_pool) and on asyncpg, in one run.

    .venv/bin/python bench/store_drivers.py [--seconds 3] [--rounds 3] [--concurrency 16] [--url URL]

Without --url it starts a throwaway cluster (tests/services/postgres.py). Both drivers run the same SQL, with a
pool of 8 connections, on the same table, taking turns round after round so that a busy machine slows both
alike. The operations are those of the store's hot paths:
- get: a record by key (a token check that missed the cache);
- refresh: one transaction consuming a record (DELETE ... RETURNING) and upserting four (a refresh-token
  rotation);
- revoke: one transaction deleting a key and five prefixes (a grant revoked).
It prints operations per second and the 99th percentile latency for each driver, as medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bastion.store import postgres  # noqa: E402 - the store's SQL, so that both drivers run exactly that

POOL = 8
SCHEMA = "DROP TABLE IF EXISTS bench_records;" + postgres.MIGRATIONS[0].replace(postgres.TABLE, "bench_records")


def _bench(statement: str) -> str:
    """The store's own statement, on the bench's table."""
    return statement.replace(postgres.TABLE, "bench_records")


GET, CONSUME, DELETE, DELETE_RANGES, UPSERT = map(
    _bench, (postgres.GET, postgres.CONSUME, postgres.DELETE, postgres.DELETE_RANGES, postgres.UPSERT)
)
KINDS = ("access", "refresh", "code", "rotated", "usedcode")
RECORD = orjson.dumps({"client": "c" * 22, "subject": "user-1", "scopes": ["a", "b"], "wrapped_key": "k" * 60})


class Driver:
    name = ""

    async def open(self, url: str) -> None: ...
    async def close(self) -> None: ...
    async def get(self, key: str, now: float) -> bytes | None: ...
    async def change(self, consume: list[str], delete: list[str], ranges: list[tuple[str, str]],
                     put: list[tuple[str, bytes, float | None]], now: float) -> bool: ...  # fmt: skip


class Asyncpg(Driver):
    name = "asyncpg"

    async def open(self, url: str) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL)

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, key: str, now: float) -> bytes | None:
        async with self.pool.acquire() as conn:
            value: bytes | None = await conn.fetchval(GET, key, now)
            return value

    async def change(self, consume, delete, ranges, put, now) -> bool:  # type: ignore[no-untyped-def]
        async with self.pool.acquire() as conn, conn.transaction():
            if consume and len(await conn.fetch(CONSUME, consume, now)) != len(consume):
                raise _Missing
            if delete:
                await conn.execute(DELETE, delete)
            if ranges:
                await conn.execute(DELETE_RANGES, [r[0] for r in ranges], [r[1] for r in ranges])
            if put:
                await conn.execute(UPSERT, *map(list, zip(*put, strict=True)))
        return True


class Psycopg(Driver):
    name = "psycopg"

    async def open(self, url: str) -> None:
        try:
            from psycopg import AsyncRawCursor
            from psycopg_pool import AsyncConnectionPool
        except ImportError:
            sys.exit("bench/store_drivers.py compares with psycopg 3: pip install 'psycopg[binary,pool]'")

        self.pool: Any = AsyncConnectionPool(
            url, min_size=POOL, max_size=POOL, open=False,
            kwargs={"autocommit": True, "cursor_factory": AsyncRawCursor},
        )  # fmt: skip
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, key: str, now: float) -> bytes | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(GET, (key, now))).fetchone()
            return bytes(row[0]) if row else None

    async def change(self, consume, delete, ranges, put, now) -> bool:  # type: ignore[no-untyped-def]
        async with self.pool.connection() as conn, conn.transaction():
            if consume and len(await (await conn.execute(CONSUME, (consume, now))).fetchall()) != len(consume):
                raise _Missing
            if delete:
                await conn.execute(DELETE, (delete,))
            if ranges:
                await conn.execute(DELETE_RANGES, ([r[0] for r in ranges], [r[1] for r in ranges]))
            if put:
                await conn.execute(UPSERT, tuple(map(list, zip(*put, strict=True))))
        return True


class _Missing(Exception):
    """A record to consume was gone: roll back."""


async def measure(op: Callable[[int], Awaitable[None]], seconds: float, concurrency: int) -> tuple[float, float]:
    """(operations per second, p99 ms) of `op(i)` run by `concurrency` workers for `seconds`."""
    latencies: list[float] = []
    counter = iter(range(10**9))
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            started = time.perf_counter()
            await op(next(counter))
            latencies.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, statistics.quantiles(latencies, n=100)[98] * 1000


async def run_round(driver: Driver, seconds: float, concurrency: int, tag: str) -> dict[str, tuple[float, float]]:
    now = time.time()
    grants = [f"{tag}g{n}" for n in range(200)]
    await driver.change([], [], [], [(f"grant:{g}", RECORD, None) for g in grants], now)
    await driver.change(
        [], [], [], [(f"refresh:{g}:{i}", RECORD, 3600.0 + now) for g in grants for i in range(50)], now
    )
    results = {}

    async def get(i: int) -> None:
        assert await driver.get(f"grant:{grants[i % len(grants)]}", now) is not None

    async def refresh(i: int) -> None:
        g = grants[i % len(grants)]
        old, new = f"refresh:{g}:{i // len(grants)}", f"refresh:{g}:n{i}"
        put = [(f"access:{g}:n{i}", RECORD, now + 3600), (new, RECORD, now + 86400),
               (f"rotated:{g}:{i}", RECORD, now + 86400), (f"grant:{g}", RECORD, None)]  # fmt: skip
        await driver.change([old], [], [], put, now)

    async def revoke(i: int) -> None:
        g = grants[i % len(grants)]
        ranges = [(f"{kind}:{g}:", f"{kind}:{g};") for kind in KINDS]
        await driver.change([], [f"grant:{g}"], ranges, [], now)

    results["get"] = await measure(get, seconds, concurrency)
    results["refresh"] = await measure(refresh, seconds, concurrency)
    results["revoke"] = await measure(revoke, seconds, concurrency)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--url", help="an existing database (its bench_records table is replaced)")
    args = parser.parse_args()
    if args.url:
        await bench(args.url, args)
        return
    from tests.services.postgres import running_cluster

    with running_cluster() as cluster:
        await bench(cluster.url(), args)


async def bench(url: str, args: argparse.Namespace) -> None:
    import asyncpg

    setup = await asyncpg.connect(url)
    await setup.execute(SCHEMA)
    await setup.close()
    drivers: list[Driver] = [Psycopg(), Asyncpg()]
    for driver in drivers:
        await driver.open(url)
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for round_ in range(args.rounds):
            for driver in drivers if round_ % 2 == 0 else drivers[::-1]:
                for op, result in (
                    await run_round(driver, args.seconds, args.concurrency, f"{driver.name}{round_}")
                ).items():
                    rows.setdefault((op, driver.name), []).append(result)
    finally:
        for driver in drivers:
            await driver.close()
    print(f"{args.rounds} rounds x {args.seconds:g} s per operation, {args.concurrency} concurrent, pool {POOL}")
    print("| operation | driver | ops/s | p99 ms |\n|---|---|---:|---:|")
    for (op, name), results in rows.items():
        rate = statistics.median(r[0] for r in results)
        p99 = statistics.median(r[1] for r in results)
        print(f"| {op} | {name} | {rate:.0f} | {p99:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
