"""What every upstream identity provider offers: an authorization URL, and a code exchanged for an identity."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..ops.telemetry import Telemetry


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


class TokenEndpointProvider:
    """What OAuth-speaking providers share: recording a token response, and renewing with a refresh token."""

    name: str
    scopes: list[str]
    scope_separator = " "

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        raise NotImplementedError

    def _token(self, tokens: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """The token as the grant keeps it; a response without a refresh token keeps the previous one."""
        expires_in = str(tokens.get("expires_in") or "")
        granted = tokens.get("scope")
        scopes = (previous or {}).get("scopes") or list(self.scopes)
        return {
            "access_token": tokens["access_token"],
            "refresh_token": tokens.get("refresh_token") or (previous or {}).get("refresh_token"),
            "expires_at": time.time() + int(expires_in) if expires_in.isdigit() else None,
            "scopes": [s for s in granted.split(self.scope_separator) if s] if isinstance(granted, str) else scopes,
        }

    async def refresh(self, token: dict[str, Any]) -> dict[str, Any] | None:
        """A renewed token, or None when the provider will not renew it (the user must sign in again)."""
        if not token.get("refresh_token"):
            return None
        try:
            tokens = await self._token_request({"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
        except UpstreamLoginError:
            return None
        return self._token(tokens, token)


class ProviderTokens:
    """Renews and revokes users' upstream tokens at the provider that issued them (the grants' UpstreamTokens)."""

    def __init__(self, providers: Mapping[str, UpstreamProvider], telemetry: Telemetry | None = None) -> None:
        self.providers = dict(providers)
        self.telemetry = telemetry  # counts renewals by outcome

    async def refresh(self, provider: str, token: dict[str, Any]) -> dict[str, Any] | None:
        found = self.providers.get(provider)
        if found is None:
            return None
        if self.telemetry is None:
            return await found.refresh(token)
        outcome = "failed"
        try:
            renewed = await found.refresh(token)
            outcome = "renewed" if renewed is not None else "refused"
            return renewed
        finally:
            self.telemetry.renewal(provider, outcome)

    async def revoke(self, provider: str, token: dict[str, Any]) -> None:
        found = self.providers.get(provider)
        if found is not None:
            await found.revoke(token)
