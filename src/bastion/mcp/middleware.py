"""Middleware: code that runs around every MCP request the server answers (docs/tools.md#middleware).

    @app.middleware
    async def no_deploys_on_friday(call: Call, proceed: Proceed) -> dict:
        if call.method == "tools/call" and call.target == "deploy" and is_friday():
            raise Denied("deploys wait until Monday")
        return await proceed(call)

A middleware is given the request (`Call`: method, target, arguments, caller) and the rest of the chain
(`proceed`); it returns the result, which it may look at, time, or never ask for. Raising `Denied` answers the
client with a JSON-RPC error saying why (HTTP 403 on 2026-07-28 requests); `RateLimited` with 429 and Retry-After.
The first middleware registered is the outermost. It runs after authentication and before the per-tool scope
check, the tool, and the answer's shaping; for every request of every protocol revision, on HTTP and stdio.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import DENIED, INTERNAL_ERROR, RATE_LIMITED, UNAVAILABLE, McpError
from .exchange import Exchange

log = logging.getLogger("bastion")

# The keys of params that name what a request is for.
TARGETS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri", "resources/subscribe": "uri"}


@dataclass(frozen=True)
class Call:
    """One MCP request, as middleware sees it. `arguments` and `params` are the request's own: read, never change."""

    method: str
    target: str | None  # the tool or prompt name, or the resource URI; None for other methods
    arguments: Mapping[str, Any]  # a tool's or prompt's arguments ({} for other methods)
    principal: Any  # the authenticated caller (bastion.Principal), or None on an unauthenticated server
    protocol_version: str
    session_id: str | None
    params: dict[str, Any] = field(repr=False)
    exchange: Exchange = field(repr=False, compare=False)


Proceed = Callable[[Call], Awaitable[dict[str, Any]]]
Middleware = Callable[[Call, Proceed], Awaitable[dict[str, Any]]]


class Denied(McpError):
    """A middleware's refusal: the client is told `message`, and nothing behind the middleware runs."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(DENIED, message, data)


class RateLimited(McpError):
    """Too many requests: the client is told when it may try again (Retry-After on HTTP)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(RATE_LIMITED, message, {"retryAfterSeconds": retry_after})
        self.headers = ((b"retry-after", str(retry_after).encode()),)
        self.retry_after = retry_after


class Unavailable(McpError):
    """What the request needs (the store) cannot answer now: 503, and when to try again."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(UNAVAILABLE, message)
        self.headers = ((b"retry-after", str(retry_after).encode()),)


def call_of(ex: Exchange, params: dict[str, Any]) -> Call:
    key = TARGETS.get(ex.method)
    target = params.get(key) if key else None
    arguments = params.get("arguments") if ex.method in ("tools/call", "prompts/get") else None
    return Call(
        ex.method,
        target if isinstance(target, str) else None,
        arguments if isinstance(arguments, dict) else {},
        ex.principal,
        ex.protocol_version,
        ex.session_id,
        params,
        ex,
    )


def chain(middleware: Sequence[Middleware], innermost: Proceed) -> Proceed:
    """`innermost` inside every middleware, the first the outermost. A middleware that raises anything but an
    McpError is logged and the client told only that the request failed (as for a tool's own errors)."""
    proceed = innermost
    for each in reversed(middleware):
        proceed = _around(each, proceed)
    return proceed


def _around(middleware: Middleware, proceed: Proceed) -> Proceed:
    name = getattr(middleware, "__qualname__", repr(middleware))

    async def run(call: Call) -> dict[str, Any]:
        inside = False  # whether what raised came from the rest of the chain (not this middleware's to report)

        async def onward(next_call: Call) -> dict[str, Any]:
            nonlocal inside
            try:
                return await proceed(next_call)
            except BaseException:
                inside = True
                raise

        try:
            return await middleware(call, onward)
        except McpError:
            raise
        except Exception:
            if inside:
                raise
            log.exception("middleware %s failed on %s", name, call.method)
            raise McpError(INTERNAL_ERROR, "Internal error") from None

    return run
