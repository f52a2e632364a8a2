"""[audit]: the trail of security events (docs/operations.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description="Record security events (sign-ins, tokens, replays, revocations) while the authorization "
        "server runs.",
    )
    retention_days: float = Field(90, gt=0, le=3650, description="How long stored audit events are kept.")
    sink: str | None = Field(
        None,
        description='Also write each event as a JSON line: "stdout", or a file path (appended to), for a SIEM.',
    )
