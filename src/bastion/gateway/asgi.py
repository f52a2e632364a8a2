"""An ASGI MCP application (the official SDK's, FastMCP's, anyone's) behind Bastion's front door, in this process.

What it receives of a request the gate let in: the caller as Starlette's conventions have it (`scope["user"]`, an
authenticated user whose `identity` is the subject; `scope["auth"]`, the token's scopes) and as Bastion's own
(`scope["bastion.principal"]`, the Principal); never the bearer token: the Authorization header is removed.

Its lifespan runs with Bastion's (its session manager, its own start-up and shutdown): an application that does not
take lifespan events is served without them, as ASGI servers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.authentication import AuthCredentials, BaseUser

from ..principal import SCOPE_KEY, Principal

log = logging.getLogger("bastion")


class PrincipalUser(BaseUser):
    """The signed-in caller, as Starlette's AuthenticationMiddleware would have set it."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.subject

    @property
    def identity(self) -> str:
        return self.principal.subject


class InProcessApp:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._state: dict[str, Any] = {}  # what its lifespan keeps for its requests (Starlette's `state`)
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._running: asyncio.Task[None] | None = None
        self._lifespan = False  # whether it took the lifespan events

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        inner = dict(scope)
        inner["headers"] = [(name, value) for name, value in scope["headers"] if name != b"authorization"]
        principal = scope.get(SCOPE_KEY)
        if principal is not None:
            inner["user"] = PrincipalUser(principal)
            inner["auth"] = AuthCredentials(sorted(principal.scopes))
        inner["state"] = dict(self._state)
        await self.app(inner, receive, send)

    async def start(self) -> None:
        """Send it the lifespan's start-up and wait for its answer; RuntimeError with its message if it failed."""
        self._running = asyncio.create_task(self._lifespan_of_app(), name="bastion-protected-lifespan")
        await self._events.put({"type": "lifespan.startup"})
        answer = await self._answers.get()
        if answer["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the protected application did not start: {answer.get('message') or 'no reason'}")
        self._lifespan = answer["type"] == "lifespan.startup.complete"

    async def stop(self) -> None:
        if self._running is None:
            return
        if self._lifespan and not self._running.done():
            await self._events.put({"type": "lifespan.shutdown"})
            answer = await self._answers.get()
            if answer["type"] == "lifespan.shutdown.failed":
                log.error("the protected application's shutdown failed: %s", answer.get("message") or "no reason")
        self._running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._running

    async def _lifespan_of_app(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self._state}
        try:
            await self.app(scope, self._events.get, self._answers.put)
            await self._answers.put({"type": "lifespan.ended"})  # whoever still waits for an answer has it
        except Exception as exc:  # an application without lifespan support raises: served without it
            if not self._lifespan:
                log.debug("the protected application takes no lifespan events (%s)", type(exc).__name__)
                await self._answers.put({"type": "lifespan.unsupported"})
            else:
                log.exception("the protected application's lifespan failed")
                await self._answers.put({"type": "lifespan.shutdown.failed", "message": str(exc)})
