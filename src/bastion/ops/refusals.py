"""MCP requests refused by middleware, in the audit trail: a middleware's Denied as `request.denied` (each one:
a policy said no), [limits]' RateLimited as `request.rate_limited` (sampled, as invalid tokens are: a flood writes
one event per period, the others counted in it). The outermost middleware, so that it sees every refusal inside;
the caller, address and request id come from the request the bearer gate bound (ops/audit.py)."""

from __future__ import annotations

from typing import Any

from ..mcp.middleware import Call, Denied, Proceed, RateLimited
from .audit import AuditEvent, AuditTrail

TEXT_LIMIT = 200  # characters kept of a target or a reason


class RefusalAudit:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    async def __call__(self, call: Call, proceed: Proceed) -> dict[str, Any]:
        try:
            return await proceed(call)
        except RateLimited as exc:
            self.trail.record_sampled(AuditEvent("request.rate_limited", "failure", details=_details(call, exc)))
            raise
        except Denied as exc:
            self.trail.record(AuditEvent("request.denied", "failure", details=_details(call, exc)))
            raise


def _details(call: Call, refusal: Denied | RateLimited) -> dict[str, str | int | float | bool | None]:
    return {
        "method": call.method,
        "target": call.target[:TEXT_LIMIT] if call.target is not None else None,
        "reason": refusal.message[:TEXT_LIMIT],
    }
