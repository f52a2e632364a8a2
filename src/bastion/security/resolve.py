"""Name resolution for outbound fetches that cannot starve the rest of the server.

The system resolver (getaddrinfo) blocks, and a lookup of a name whose DNS server never answers blocks for as
long as the C library's own retries last. Run on the event loop's default executor, a few such lookups (anyone
can name a host under a domain they control) would occupy the threads every other `run_in_executor` and
`getaddrinfo` call of the process waits for. So each lookup here gets a daemon thread of its own, and:

* at most `max_lookups` threads exist at once, counting those whose caller already gave up (a blocked
  getaddrinfo call cannot be cancelled: its thread is bounded instead, and freed when the C library returns);
  past that a lookup fails at once rather than queueing behind stuck ones;
* lookups of the same name share one thread, so one hostile name holds at most one;
* the caller decides how long to wait (cancelling the wait never touches the thread), and being daemon threads
  they never hold up the process's exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ResolverBusy", "SystemResolver"]

GetAddrInfo = Callable[..., list[tuple[Any, ...]]]


class ResolverBusy(OSError):
    """Every lookup thread is taken (by lookups that have not returned yet)."""


class SystemResolver:
    """getaddrinfo on a small, dedicated, bounded set of threads; see the module docstring."""

    def __init__(self, max_lookups: int = 8, getaddrinfo: GetAddrInfo | None = None) -> None:
        if max_lookups < 1:
            raise ValueError("max_lookups must be at least 1")
        self.max_lookups = max_lookups
        self._getaddrinfo = getaddrinfo or socket.getaddrinfo  # tests inject one that blocks, or counts
        self._lock = threading.Lock()
        self._pending: dict[str, concurrent.futures.Future[list[str]]] = {}

    @property
    def threads(self) -> int:
        """Lookup threads alive now, including those nobody waits for any more."""
        with self._lock:
            return len(self._pending)

    async def __call__(self, host: str) -> list[str]:
        """Every address `host` resolves to; OSError (ResolverBusy when full) if it cannot be resolved now."""
        # Running from the start, so a caller that stops waiting cannot cancel it for the others sharing it.
        return await asyncio.wrap_future(self._lookup(host.lower()))

    def _lookup(self, host: str) -> concurrent.futures.Future[list[str]]:
        with self._lock:
            shared = self._pending.get(host)
            if shared is not None:
                return shared
            if len(self._pending) >= self.max_lookups:
                raise ResolverBusy("too many name lookups in progress")
            future: concurrent.futures.Future[list[str]] = concurrent.futures.Future()
            future.set_running_or_notify_cancel()
            self._pending[host] = future
        thread = threading.Thread(target=self._run, args=(host, future), name="bastion-resolve", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread could be started: give the slot back
            with self._lock:
                del self._pending[host]
            raise ResolverBusy("could not start a name lookup") from None
        return future

    def _run(self, host: str, future: concurrent.futures.Future[list[str]]) -> None:
        try:
            infos = self._getaddrinfo(host, None, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
            addresses = [str(info[4][0]) for info in infos]
        except Exception as exc:  # handed to the waiting coroutine, which maps it
            error: Exception | None = exc
        else:
            error = None
        finally:
            with self._lock:  # the slot is free before anyone hears the answer
                del self._pending[host]
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(addresses)
