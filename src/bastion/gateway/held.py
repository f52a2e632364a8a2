"""Calls to 2025 servers held open while a 2026-07-28 caller answers their questions.

A 2025 server asks its question mid-call, on the call's stream, and waits; a 2026-07-28 caller cannot be asked
mid-call: it is answered `input_required` and sends its call again with its answers. So the call at the server is
held (its task, waiting on the question) under a random id that the caller's request state carries, sealed with
the caller, tool and arguments (remote.py); the call sent again with the answers finds it, answers the server,
and goes on waiting for its result or its next question.

Held calls live in this process: a call sent again to another instance is told the state is no longer held, and
so is one sent after HOLD_SECONDS (its call at the server is then cancelled). At most MAX_HELD are held at once;
beyond, the oldest is let go.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

HOLD_SECONDS = 300.0
MAX_HELD = 1000


@dataclass(eq=False)
class Question:
    """What the server asked, and where its answer goes (the caller's result, or an error for the server)."""

    method: str
    params: dict[str, Any]
    answer: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(eq=False)
class Held:
    call: asyncio.Task[Any]  # the call at the server, waiting on `question`
    question: Question
    relay: Any  # remote._Relay: what the server sends meanwhile goes to whichever request resumes it
    rounds: int = 1


class HeldCalls:
    def __init__(self, hold_seconds: float = HOLD_SECONDS, max_held: int = MAX_HELD) -> None:
        self.hold_seconds = hold_seconds
        self.max_held = max_held
        self._held: dict[str, tuple[Held, asyncio.TimerHandle]] = {}

    def hold(self, held: Held) -> str:
        """Keep `held` for its caller; the id its request state carries."""
        while len(self._held) >= self.max_held:
            self._let_go(next(iter(self._held)))
        key = secrets.token_urlsafe(18)
        expiry = asyncio.get_running_loop().call_later(self.hold_seconds, self._let_go, key)
        self._held[key] = (held, expiry)
        return key

    def take(self, key: str) -> Held | None:
        """The call held under `key`, no longer held (None if it never was, expired, or was let go)."""
        entry = self._held.pop(key, None)
        if entry is None:
            return None
        held, expiry = entry
        expiry.cancel()
        return held

    def close(self) -> None:
        for key in list(self._held):
            self._let_go(key)

    def __len__(self) -> int:
        return len(self._held)

    def _let_go(self, key: str) -> None:
        entry = self._held.pop(key, None)
        if entry is not None:
            held, expiry = entry
            expiry.cancel()
            held.call.cancel()  # the server is told (a 2025 session's cancellation)
