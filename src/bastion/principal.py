"""Who is calling: what authentication hands to tools through `ctx.principal`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Where authentication leaves the Principal in the ASGI scope for the MCP engine.
SCOPE_KEY = "bastion.principal"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # the user, stable across sign-ins ("dev:alice", later "github:12345")
    client_id: str  # the application acting for them
    scopes: frozenset[str] = frozenset()
    resource: str = ""  # the audience the token was issued for
    expires_at: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)  # identity details (name, email, provider)

    def has_scopes(self, *needed: str) -> bool:
        return set(needed) <= self.scopes
