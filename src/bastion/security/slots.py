"""Caps on open outbound connections: so many in all, and so many to any one host.

Anyone can make the server fetch from a host of their choosing, and a host can answer as slowly as it likes.
Without a cap, a burst of requests naming one slow host opens a socket each and holds it to the deadline.
A connection takes its host's slot first and a global one second, so requests queued behind one busy host
never hold global slots that requests for other hosts could use. How long to wait is the caller's to bound (the
fetch's deadline covers it); how many may wait for one host is bounded here: past that, a request is refused at
once (SlotsFull) instead of joining a queue that could not drain before its deadline anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["ConnectionSlots", "SlotsFull"]


class SlotsFull(Exception):
    """Too many requests are already waiting for a connection to this host."""


class _Host:
    __slots__ = ("semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0  # holding or waiting: the entry is dropped when it falls to 0


class ConnectionSlots:
    def __init__(self, total: int, per_host: int, waiting_per_host: int) -> None:
        if total < 1 or per_host < 1 or waiting_per_host < 0:
            raise ValueError("connection limits must be at least 1 (and waiting limits at least 0)")
        self.total = total
        self.per_host = per_host
        self.waiting_per_host = waiting_per_host
        self._global = asyncio.Semaphore(total)
        self._hosts: dict[str, _Host] = {}
        self.open = 0  # connections holding both slots now
        self.waiting = 0  # requests waiting for a slot now

    def hosts(self) -> int:
        """Hosts with a connection open or waited for (entries are kept only while in use)."""
        return len(self._hosts)

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        """A slot for one connection to `host`, released on exit (including cancellation); SlotsFull if the
        host's queue is full."""
        entry = self._hosts.get(host)
        if entry is not None and entry.users >= self.per_host + self.waiting_per_host:
            raise SlotsFull(host)
        if entry is None:
            entry = self._hosts[host] = _Host(self.per_host)
        entry.users += 1
        self.waiting += 1
        acquired = False
        try:
            async with entry.semaphore, self._global:
                self.waiting -= 1
                acquired = True
                self.open += 1
                try:
                    yield
                finally:
                    self.open -= 1
        finally:
            if not acquired:  # gave up (deadline, cancellation) while waiting
                self.waiting -= 1
            entry.users -= 1
            if entry.users == 0:
                del self._hosts[host]
