"""[limits] as the outermost middleware: requests per minute per caller, and calls per minute per caller and tool,
counted in the store (ratelimit.py), so that every instance on one store holds the same limit.

A caller is its subject (unauthenticated callers count together, as one). Over a limit the request is answered
with RATE_LIMITED (HTTP 429, Retry-After: the seconds left in the window) and nothing behind it runs; nothing is
counted for it either. A store that cannot count answers UNAVAILABLE (503): a limit that cannot be checked is not
waived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from ..mcp.middleware import Call, Proceed, RateLimited, Unavailable
from ..ratelimit import RateLimiter
from ..store import Store, StoreUnavailable

log = logging.getLogger("bastion")
WINDOW_SECONDS = 60.0


class Limits:
    def __init__(
        self, store: Store, requests_per_minute: int, tools: dict[str, int], *, clock: Callable[[], float] = time.time
    ) -> None:
        every = RateLimiter(store, requests_per_minute, WINDOW_SECONDS, clock=clock) if requests_per_minute else None
        self.every = every
        self.tools = [(glob, RateLimiter(store, limit, WINDOW_SECONDS, clock=clock)) for glob, limit in tools.items()]

    async def __call__(self, call: Call, proceed: Proceed) -> dict[str, Any]:
        caller = getattr(call.principal, "subject", None) or ""  # "": every unauthenticated caller, together
        try:
            if self.every is not None and not await self.every.allow(f"mcp\0{caller}"):
                raise RateLimited(f"Too many requests: at most {self.every.limit} a minute", self.every.retry_after())
            tool = self._limit_of(call)
            if tool is not None and not await tool.allow(f"mcp-tool\0{caller}\0{call.target}"):
                raise RateLimited(f"Too many calls to {call.target}: at most {tool.limit} a minute", tool.retry_after())
        except StoreUnavailable as exc:
            log.warning("rate limits not checked: %s", exc)
            raise Unavailable("Temporarily unavailable: try again shortly") from None
        return await proceed(call)

    def _limit_of(self, call: Call) -> RateLimiter | None:
        if call.method != "tools/call" or call.target is None:
            return None
        return next((limiter for glob, limiter in self.tools if fnmatchcase(call.target, glob)), None)
