"""The bus contract: publish an event on a topic; every subscriber of that topic is told."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any]], None]

# A grant (and every token it issued) was revoked: caches of verified tokens must forget them.
GRANT_REVOKED = "grant.revoked"


class Bus(abc.ABC):
    # Network buses count their (re)connections: events published while one was down never reach it, so what a
    # subscriber cached under an earlier generation (or while `healthy` is False) is not to be trusted.
    generation: int = 0

    @property
    def healthy(self) -> bool:
        """Events other instances publish reach this one (always, for the in-process bus)."""
        return True

    @abc.abstractmethod
    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call `handler(event)` for every event published on `topic` from now on."""

    @abc.abstractmethod
    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        """Tell every subscriber of `topic`; returns once local subscribers have been told."""

    async def start(self) -> None:  # noqa: B027 - the local bus needs no connection
        """Connect and start listening (network buses); called once at start-up, on the serving event loop."""

    async def close(self) -> None:  # noqa: B027 - the local bus holds nothing
        """Release connections."""
