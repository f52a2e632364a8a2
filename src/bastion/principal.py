"""Who is calling: what authentication hands to tools through `ctx.principal`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Where authentication leaves the Principal in the ASGI scope for the MCP engine.
SCOPE_KEY = "bastion.principal"


class UpstreamError(Exception):
    """A tool needed an upstream token the user's grant does not hold (or not with the needed scopes)."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # the user, stable across sign-ins ("dev:alice", "corp:00u1ab2c")
    client_id: str  # the application acting for them
    scopes: frozenset[str] = frozenset()
    resource: str = ""  # the audience the token was issued for
    expires_at: float | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)  # identity details (name, email, provider)
    # Tokens from the identity provider, for tools to call its APIs. Never shown in repr, never sent to clients.
    upstream: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    # Renews an expired upstream token (set by the authorization server; one refresh at a time per grant).
    refresh: Callable[[str], Awaitable[Mapping[str, Any] | None]] | None = field(
        default=None, repr=False, compare=False
    )

    def has_scopes(self, *needed: str) -> bool:
        return set(needed) <= self.scopes

    def upstream_token(self, provider: str, scopes: list[str] | tuple[str, ...] = ()) -> str:
        """The user's access token at `provider`, or UpstreamError saying what is missing."""
        return _usable(provider, self.upstream.get(provider), scopes)

    async def fresh_upstream_token(self, provider: str, scopes: list[str] | tuple[str, ...] = ()) -> str:
        """Like upstream_token, but renews a token that has expired (or is about to) first."""
        token = self.upstream.get(provider)
        expires_at = token.get("expires_at") if token else None
        if self.refresh is not None and isinstance(expires_at, int | float) and expires_at - 60 <= time.time():
            token = await self.refresh(provider) or token
        return _usable(provider, token, scopes)


def _usable(provider: str, token: Mapping[str, Any] | None, scopes: list[str] | tuple[str, ...]) -> str:
    if token is None:
        raise UpstreamError(f"this user did not sign in with {provider}, so no {provider} token is available")
    missing = set(scopes) - set(token.get("scopes", ()))
    if missing:
        raise UpstreamError(
            f"the {provider} sign-in did not grant: {' '.join(sorted(missing))}; sign in again granting it"
        )
    expires_at = token.get("expires_at")
    if isinstance(expires_at, int | float) and expires_at <= time.time():
        raise UpstreamError(f"the {provider} token has expired; sign in again")
    return str(token["access_token"])
