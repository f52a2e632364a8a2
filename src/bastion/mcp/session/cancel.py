"""A request's handle for cancelling it on purpose, shared by every transport."""

from __future__ import annotations

import asyncio
from typing import Any


class Cancellable:
    """A request's task, cancelled on purpose (client disconnect or notifications/cancelled).

    `requested` tells the request's own code that the CancelledError it sees was asked for (no response is
    owed) rather than the server shutting down (which must propagate).
    """

    __slots__ = ("requested", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.requested = False

    def cancel(self) -> None:
        self.requested = True
        self.task.cancel()
