"""[limits]: how many MCP requests a caller may make, counted in the store (every instance on it shares them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LimitsSettings(BaseModel):
    """Requests per minute per caller (its subject; unauthenticated callers count together), in fixed one-minute
    windows. Over a limit, a request is answered with a JSON-RPC error and HTTP 429 with Retry-After."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int = Field(
        0, ge=0, description="Every MCP request of one caller, whatever its method (0: no limit)."
    )
    tools: dict[str, int] = Field(
        default_factory=dict,
        description='Calls per minute of one caller to each tool, by tool name glob, e.g. {"send_*" = 10}; the first '
        "glob that matches a tool applies to it.",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.requests_per_minute or self.tools)

    def problems(self) -> list[str]:
        return [
            f"limits.tools: {glob!r} = {limit}: a limit is at least 1 call a minute (remove the entry for none)"
            for glob, limit in self.tools.items()
            if limit < 1
        ]
