"""What the server tells operators' monitoring as it works: Prometheus metrics (ops/metrics.py), OpenTelemetry
spans (ops/tracing.py), or both, behind one object the other parts are given (None when both are off).

Each part reports here, and only here: the MCP engine each request (`operation`), the bearer gate each decision
(`decision`), the store each operation (`store_operation`, through ObservedStore), upstream renewals
(`renewal`), the session table its size (`sessions`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..mcp.errors import McpError

if TYPE_CHECKING:
    from ..mcp.exchange import Exchange
    from .metrics import Metrics
    from .tracing import Tracing

Answer = Callable[["Exchange", dict[str, Any]], Awaitable[dict[str, Any]]]


class Telemetry:
    def __init__(self, metrics: Metrics | None = None, tracing: Tracing | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    async def operation(
        self, ex: Exchange, params: dict[str, Any], method: str, tool: str, prompt: str, answer: Answer
    ) -> dict[str, Any]:
        """Run `answer` for one MCP request, timed and traced. `method` is the request's method when the server
        has it ("_OTHER" else), `tool` and `prompt` the registered names it is for ("" for none, or for a name
        that is not registered): a client may send anything, and labels must stay few."""
        span = self.tracing.operation(ex, params, method, tool, prompt) if self.tracing is not None else None
        started = time.perf_counter()
        error = ""
        try:
            result = await answer(ex, params)
            if result.get("isError") is True:
                error = "tool_error"
            return result
        except McpError as exc:
            error = str(exc.code)
            raise
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:
            error = type(exc).__qualname__
            raise
        finally:
            if self.metrics is not None:
                seconds = time.perf_counter() - started
                self.metrics.operation(method, tool, prompt, error, ex.protocol_version, seconds)
            if span is not None:
                span.finish(error)

    def decision(self, decision: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.decision(decision, reason)

    def sessions(self, change: int) -> None:
        if self.metrics is not None:
            self.metrics.sessions(change)

    def security_event(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.security_event(kind, outcome)

    def renewal(self, provider: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.renewal(provider, outcome)
