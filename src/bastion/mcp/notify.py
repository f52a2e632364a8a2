"""Change notifications fanned out to everyone listening: list changes and resource updates.

Listeners are legacy sessions (their GET stream, or stdout for stdio) and 2026-07-28 `subscriptions/listen`
streams; each says which notifications it wants.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .jsonrpc import notification_message

log = logging.getLogger("bastion.mcp")

LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "resources": "notifications/resources/list_changed",
    "prompts": "notifications/prompts/list_changed",
}


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

    def add(self, listener: Listener) -> None:
        self._loop = asyncio.get_running_loop()
        self._listeners.add(listener)

    def list_changed_soon(self, kind: str) -> None:
        """Schedule list_changed from any thread (tools may register tools from a worker thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # nobody has listened yet: nothing to tell
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

    async def list_changed(self, kind: str) -> None:
        method = LIST_CHANGED[kind]
        for listener in list(self._listeners):
            if kind in listener.lists:
                await self._deliver(listener, method, {})

    async def resource_updated(self, uri: str) -> None:
        for listener in list(self._listeners):
            if uri in listener.resources:
                await self._deliver(listener, "notifications/resources/updated", {"uri": uri})

    async def _deliver(self, listener: Listener, method: str, params: dict[str, Any]) -> None:
        if listener.meta:
            params = {**params, "_meta": listener.meta}
        try:
            await listener.send(notification_message(method, params))
        except Exception:  # a broken listener must not stop the others
            log.debug("dropping a notification for a closed listener", exc_info=True)
            self._listeners.discard(listener)
