"""The relay: list changes and resource updates raised on one instance reach clients connected to any instance.

It joins the MCP engine's Broadcaster and the bus, neither knowing the other. A change raised here is told to this
instance's listeners by the broadcaster itself, then handed to the relay (a forwarder), which publishes it once on
the bus. A change heard on the bus is queued and told to this instance's listeners through
`Broadcaster.deliver`, which never forwards: nothing is published twice or travels in a loop. Every bus also hands
a publisher's own event to its local subscribers; the relay recognises its own events by an origin id and drops
them, since its listeners were told directly.

Events are small and carry no secrets: `{"origin", "what": "list_changed" | "resource_updated", "subject": kind or
URI}`. What is heard is checked before it is queued (a peer's junk is dropped with a warning that does not quote
it); identical changes still waiting are told once, and a bounded queue drops the newest when full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from typing import Any

from ..mcp.notify import LIST_CHANGED, Broadcaster, Change
from ..store.bus import Bus

log = logging.getLogger("bastion.relay")

TOPIC = "mcp.changed"
URI_LIMIT = 2048  # bytes of UTF-8: far below what any bus carries in one message
BACKLOG = 1000


class Relay:
    def __init__(self, broadcaster: Broadcaster, bus: Bus, *, backlog: int = BACKLOG) -> None:
        self.broadcaster = broadcaster
        self.bus = bus
        self.backlog = backlog
        self.origin = secrets.token_hex(16)
        self._waiting: deque[Change] = deque()
        self._queued: set[Change] = set()
        self._wake = asyncio.Event()
        self._teller: asyncio.Task[None] | None = None
        bus.subscribe(TOPIC, self.heard)

    async def start(self) -> None:
        """On the serving loop, after the bus has started: forward what is raised here, tell what is heard."""
        if self._teller is not None:
            return
        self.broadcaster.forward(self.publish)
        self._teller = asyncio.create_task(self._tell(), name="bastion-relay")

    async def close(self) -> None:
        self.broadcaster.stop_forwarding(self.publish)
        teller, self._teller = self._teller, None
        if teller is not None:
            teller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await teller

    # --- out: a change raised on this instance ------------------------------------------------------------------
    async def publish(self, change: Change) -> None:
        if not _fits(change):
            log.warning("a %s too large to relay was told to this instance's clients only", change.what)
            return
        await self.bus.publish(TOPIC, {"origin": self.origin, "what": change.what, "subject": change.subject})

    # --- in: a change raised on another instance ----------------------------------------------------------------
    def heard(self, event: dict[str, Any]) -> None:
        """The bus's handler (sync, on the serving loop): queue the change for this instance's listeners."""
        origin = event.get("origin")
        if origin == self.origin:
            return  # raised here: the broadcaster told this instance's listeners already
        change = _change(event)
        if change is None or not isinstance(origin, str):
            log.warning("a malformed change on the bus was dropped")
            return
        if change in self._queued:
            return  # the same change waits to be told: once is enough
        if len(self._waiting) >= self.backlog:
            log.warning("relay backlog full: a change from another instance was dropped")
            return
        self._waiting.append(change)
        self._queued.add(change)
        self._wake.set()

    async def _tell(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                change = self._waiting.popleft()
                self._queued.discard(change)
                try:
                    await self.broadcaster.deliver(change)
                except Exception:
                    log.exception("telling a relayed change failed")


def _fits(change: Change) -> bool:
    return len(change.subject.encode("utf-8", "surrogatepass")) <= URI_LIMIT


def _change(event: dict[str, Any]) -> Change | None:
    what, subject = event.get("what"), event.get("subject")
    if not isinstance(subject, str):
        return None
    if what == "list_changed" and subject in LIST_CHANGED:
        return Change("list_changed", subject)
    if what == "resource_updated" and subject and _fits(Change("resource_updated", subject)):
        return Change("resource_updated", subject)
    return None
