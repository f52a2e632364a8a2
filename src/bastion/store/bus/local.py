"""The in-process bus: subscribers are called in order, at once. A failing subscriber is logged and does not
stop the others (a revocation must reach every cache)."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from .base import Bus, Handler

log = logging.getLogger("bastion.bus")


class LocalBus(Bus):
    def __init__(self) -> None:
        self._handlers: defaultdict[str, list[Handler]] = defaultdict(list)

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers[topic].append(handler)

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        self.deliver(topic, event)

    def deliver(self, topic: str, event: dict[str, Any]) -> None:
        """Tell this process's subscribers of `topic`, in order (network buses use it for what they hear)."""
        for handler in self._handlers.get(topic, ()):
            try:
                handler(event)
            except Exception:
                log.exception("a %s subscriber failed", topic)
