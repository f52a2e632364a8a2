"""Change notifications fanned out to everyone listening: list changes and resource updates.

Listeners are legacy sessions (their GET stream, or stdout for stdio) and 2026-07-28 `subscriptions/listen`
streams; each says which notifications it wants.

A change raised here (`list_changed`, `resource_updated`) is told to this process's listeners and handed to each
forwarder (the relay to other instances); one heard from elsewhere goes through `deliver`: listeners only, never
handed on, so that nothing travels in a loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .jsonrpc import notification_message

log = logging.getLogger("bastion.mcp")

LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "resources": "notifications/resources/list_changed",
    "prompts": "notifications/prompts/list_changed",
}


@dataclass(frozen=True, slots=True)
class Change:
    """A list changed (`subject` is "tools", "resources" or "prompts"), or a resource (`subject` its URI) was
    updated."""

    what: Literal["list_changed", "resource_updated"]
    subject: str


Forwarder = Callable[[Change], Awaitable[None]]


@dataclass(eq=False, slots=True)
class Listener:
    send: Callable[[dict[str, Any]], Awaitable[None]]
    lists: frozenset[str] = frozenset(LIST_CHANGED)  # which list_changed kinds it wants
    resources: set[str] = field(default_factory=set)  # URIs whose updates it wants
    meta: dict[str, Any] | None = None  # added to each notification's params (subscription id)


class Broadcaster:
    def __init__(self) -> None:
        self._listeners: set[Listener] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._forwarders: list[Forwarder] = []
        self._interest: list[asyncio.Event] = []

    def add(self, listener: Listener) -> None:
        self._loop = asyncio.get_running_loop()
        self._listeners.add(listener)
        if listener.resources:
            self.interest_changed()

    # --- which resources listeners want (the gateway subscribes to them at the servers it fronts) -----------
    def wanted_resources(self) -> set[str]:
        """The URIs some listener here wants updates of."""
        wanted: set[str] = set()
        for listener in list(self._listeners):
            wanted |= listener.resources
        return wanted

    def watch_interest(self, event: asyncio.Event) -> None:
        """Set `event` whenever the resources listeners want may have changed."""
        self._interest.append(event)

    def interest_changed(self) -> None:
        """A listener subscribed or unsubscribed (or came or went with subscriptions)."""
        for event in self._interest:
            event.set()

    def forward(self, forwarder: Forwarder) -> None:
        """Hand every change raised here to `forwarder` too, after this process's listeners have been told.
        Called on the serving loop, so that changes raised before anyone here listens still go out."""
        self._loop = asyncio.get_running_loop()
        self._forwarders.append(forwarder)

    def stop_forwarding(self, forwarder: Forwarder) -> None:
        if forwarder in self._forwarders:
            self._forwarders.remove(forwarder)

    def list_changed_soon(self, kind: str) -> None:
        """Schedule list_changed from any thread (tools may register tools from a worker thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody has listened or forwarded yet: nothing to tell
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(kind)
        else:
            loop.call_soon_threadsafe(self._spawn, kind)

    def _spawn(self, kind: str) -> None:
        task = asyncio.get_running_loop().create_task(self.list_changed(kind))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def discard(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        if listener.resources:
            self.interest_changed()

    async def list_changed(self, kind: str) -> None:
        """A list changed here: tell this process's listeners, then the forwarders."""
        await self._raised(Change("list_changed", kind))

    async def resource_updated(self, uri: str) -> None:
        """A resource changed here: tell this process's listeners subscribed to it, then the forwarders."""
        await self._raised(Change("resource_updated", uri))

    async def _raised(self, change: Change) -> None:
        await self.deliver(change)
        for forwarder in list(self._forwarders):
            try:
                await forwarder(change)
            except Exception:  # the listeners here were told; another instance missing it must not fail the caller
                log.warning("a change could not be forwarded to other instances", exc_info=True)

    async def deliver(self, change: Change) -> None:
        """Tell this process's listeners only: for a change raised elsewhere (never handed to the forwarders)."""
        if change.what == "list_changed":
            method = LIST_CHANGED[change.subject]
            for listener in list(self._listeners):
                if change.subject in listener.lists:
                    await self._deliver(listener, method, {})
        else:
            for listener in list(self._listeners):
                if change.subject in listener.resources:
                    await self._deliver(listener, "notifications/resources/updated", {"uri": change.subject})

    async def _deliver(self, listener: Listener, method: str, params: dict[str, Any]) -> None:
        if listener.meta:
            params = {**params, "_meta": listener.meta}
        try:
            await listener.send(notification_message(method, params))
        except Exception:  # a broken listener must not stop the others
            log.debug("dropping a notification for a closed listener", exc_info=True)
            self._listeners.discard(listener)
