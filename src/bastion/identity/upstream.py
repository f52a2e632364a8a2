"""What every upstream identity provider offers: an authorization URL, and a code exchanged for an identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class UpstreamLoginError(Exception):
    """The provider refused, or answered something unusable; the message is safe to show."""


@dataclass
class UpstreamIdentity:
    user_id: str  # stable at the provider (OIDC sub, GitHub numeric id)
    claims: dict[str, Any] = field(default_factory=dict)  # name, email, login
    token: dict[str, Any] = field(default_factory=dict)  # access_token, refresh_token, expires_at, scopes


class UpstreamProvider(Protocol):
    name: str

    async def discovery(self) -> dict[str, Any]: ...

    async def authorization_url(self, redirect_uri: str, state: str, code_challenge: str, nonce: str) -> str: ...

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> UpstreamIdentity: ...

    async def refresh(self, token: dict[str, Any]) -> dict[str, Any] | None: ...

    async def revoke(self, token: dict[str, Any]) -> None: ...
