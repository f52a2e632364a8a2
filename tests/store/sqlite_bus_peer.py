"""Another process on the SQLite file of tests/store/test_bus_sqlite.py.

`python -m tests.store.sqlite_bus_peer bus PATH`: starts a SQLiteBus on PATH and prints "ready"; prints every
grant.revoked event it hears as one JSON line; on stdin, `publish <JSON>` publishes that event (then prints
"published") and an empty line closes the bus and exits.

`python -m tests.store.sqlite_bus_peer lock PATH`: holds the WAL index's read locks (bytes 123 to 127 of
PATH-shm, see SQLite's WAL file format) as another process stuck in recovery would, prints "locked", and lets
them go when a line arrives on stdin. POSIX locks are per process: this is why it must be another one.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sys

from bastion.store.bus import GRANT_REVOKED
from bastion.store.bus.sqlite import SQLiteBus

READ_LOCKS = 123, 5  # WAL_READ_LOCK(0) .. WAL_READ_LOCK(4): the first byte and how many


async def bus(path: str) -> None:
    peer = SQLiteBus(path)
    peer.subscribe(GRANT_REVOKED, lambda event: print(json.dumps(event), flush=True))
    await peer.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            command, _, event = line.partition(" ")
            assert command == "publish", line
            await peer.publish(GRANT_REVOKED, json.loads(event))
            print("published", flush=True)
    finally:
        await peer.close()


def lock(path: str) -> None:
    fd = os.open(f"{path}-shm", os.O_RDWR)
    start, length = READ_LOCKS
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start)
    print("locked", flush=True)
    sys.stdin.readline()
    os.close(fd)


if __name__ == "__main__":
    if sys.argv[1] == "bus":
        asyncio.run(bus(sys.argv[2]))
    else:
        lock(sys.argv[2])
