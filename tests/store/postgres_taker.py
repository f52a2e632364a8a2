"""One process racing others for the same records: `python -m tests.store.postgres_taker URL KEYS TAKERS [create]`.

Connects, prints "ready", waits for a line on stdin (so that every process starts at once), then runs TAKERS
concurrent takes of each of the KEYS records code:0 ... and prints every take it won as JSON: [[key, record], ...].
With `create`: TAKERS concurrent creates of each of lease:0:p ..., and prints those it won, with its record.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from bastion.store import Commit
from bastion.store.postgres import PostgresStore


async def main(url: str, keys: int, takers: int, create: bool) -> None:
    store = PostgresStore(url, pool_size=8)
    await store.start()
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if create:
            me = os.getpid()
            names = [f"lease:{i}:p" for i in range(keys)]
            attempts = [(name, {"pid": me, "n": n}) for n in range(takers) for name in names]
            done = await asyncio.gather(*(store.commit(Commit().add(name, mine, 30)) for name, mine in attempts))
            won = [[name, mine] for (name, mine), ok in zip(attempts, done, strict=True) if ok]
            print(json.dumps(won), flush=True)
            return
        names = [f"code:{i}" for i in range(keys)]
        results = await asyncio.gather(*(store.take(name) for _ in range(takers) for name in names))
        won = [[name, record] for name, record in zip(names * takers, results, strict=True) if record is not None]
        print(json.dumps(won), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] == ["create"]))
