"""What a fronted server says outside any call, heard as it says it: its lists changed, a resource someone
subscribed to changed. For servers reached with one credential for everyone (remote.Shared), whose view is the
same for every caller; a server reached with each caller's own credential tells only that caller, during calls.

The resources subscribed to at the server are those Bastion's own listeners want (legacy sessions'
resources/subscribe, 2026-07-28 subscriptions/listen) and the server has: kept in step whenever a listener
subscribes, unsubscribes, comes or goes, and every RECONCILE_SECONDS (a session served by another instance may
change its subscriptions there). A 2026-07-28 server is listened to again with the new list; a 2025 session
subscribes and unsubscribes one URI at a time. A stream that ends or fails is opened again, with growing pauses
while the server cannot be reached; a server that keeps no stream is listed again on the usual schedule instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..mcp.errors import McpError
from ..ops.sampled import SampledLog
from .client import BackendUnavailable, McpClient, NoStream, OnMessage

log = logging.getLogger("bastion")
RECONCILE_SECONDS = 5.0
MAX_PAUSE_SECONDS = 30.0


class Watch:
    def __init__(
        self,
        name: str,
        client: McpClient,
        heard: OnMessage,
        wanted: Callable[[], frozenset[str]],
        interest: asyncio.Event,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.name = name
        self.client = client
        self.heard = heard  # each message the server sends on the stream
        self.wanted = wanted  # the URIs to be told about now
        self.interest = interest  # set when `wanted` may have changed
        self.sleep = sleep
        self.subscribed: frozenset[str] = frozenset()  # what the server was last asked to tell about
        self._sampled = SampledLog(log, period=60.0)

    async def run(self) -> None:
        pause = 1.0
        while True:
            try:
                await self.client.connected()
                if self.client.modern:
                    await self._listen()
                else:
                    await self._session_stream()
                pause = 1.0  # it ended the stream itself: open another (after a breath)
            except NoStream as exc:
                log.info("gateway server %s: %s; its lists are kept current by listing them again", self.name, exc)
                return
            except (BackendUnavailable, McpError) as exc:
                self._sampled.warning("gateway server %s: its notification stream: %s", self.name, exc)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
            await self.sleep(pause)

    async def _listen(self) -> None:
        """2026-07-28: subscriptions/listen, opened again whenever the resources wanted change."""
        while True:
            wanted = self.subscribed = self._current()
            listening = asyncio.create_task(self.client.listen(wanted, self.heard))
            changed = asyncio.create_task(self._changed_from(wanted))
            try:
                done, _ = await asyncio.wait({listening, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (listening, changed):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if listening in done:
                listening.result()  # raises what ended it
                return
            self.subscribed = frozenset()

    async def _session_stream(self) -> None:
        """A 2025 session: its GET stream, and resources/subscribe for each URI wanted (all again whenever the
        session is a new one)."""
        session, self.subscribed = self.client.session, frozenset()
        listening = asyncio.create_task(self.client.listen((), self.heard))
        try:
            while not listening.done():
                if self.client.session != session:
                    return  # opened again meanwhile: start over on the new session
                wanted = self._current()
                if self.client.capabilities.get("resources", {}).get("subscribe") is True:
                    for uri in sorted(wanted - self.subscribed):
                        await self.client.subscribe(uri)
                        self.subscribed |= {uri}
                    for uri in sorted(self.subscribed - wanted):
                        await self.client.subscribe(uri, subscribed=False)
                        self.subscribed -= {uri}
                changed = asyncio.create_task(self._changed_from(wanted))
                try:
                    await asyncio.wait({listening, changed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await changed
            listening.result()
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    def _current(self) -> frozenset[str]:
        self.interest.clear()
        return self.wanted()

    async def _changed_from(self, wanted: frozenset[str]) -> None:
        """Return once the resources wanted differ from `wanted`."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.interest.wait(), RECONCILE_SECONDS)
            self.interest.clear()
            if self.wanted() != wanted:
                return
