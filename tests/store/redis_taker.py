"""One process racing others for the same records: `python -m tests.store.redis_taker URL CLUSTER KEYS TAKERS`.

Connects, prints "ready", waits for a line on stdin (so that every process starts at once), then runs TAKERS
concurrent takes of each of the KEYS records code:g<i>:h ... and prints every take it won as JSON:
[[key, record], ...].
"""

from __future__ import annotations

import asyncio
import json
import sys

from bastion.store.redis import RedisStore


async def main(url: str, cluster: bool, keys: int, takers: int) -> None:
    store = RedisStore(url, cluster=cluster)
    await store.start()
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        names = [f"code:g{i}:h" for i in range(keys)]
        results = await asyncio.gather(*(store.take(name) for _ in range(takers) for name in names))
        won = [[name, record] for name, record in zip(names * takers, results, strict=True) if record is not None]
        print(json.dumps(won), flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] == "cluster", int(sys.argv[3]), int(sys.argv[4])))
