"""Which verifier a bearer token goes to: Bastion's own grants, an external issuer's keys, or introspection.

A token is only ever shown to whoever could have issued it:
- A JWT (two dots) names its issuer; only that configured issuer's keys check it (its `iss` is checked again,
  exactly, after the signature), and it is never sent to anyone's introspection endpoint.
- Bastion's own tokens (access and refresh tokens and codes alike) are `<grant id>.<secret>`. When Bastion's
  authorization server runs, anything with one dot is decided by it alone, valid or not: a refresh token, a used
  code or an access token for another resource is refused here, never asked about elsewhere. And a token of
  exactly that shape (OWN_SHAPE) never leaves, even with the authorization server off, since it may be live
  elsewhere or again later.
- Anything else is opaque and asked of each issuer that has introspection configured, in the configured order.
An external issuer's opaque token can have one dot (Google's `ya29.…`, Ory Hydra's `ory_at_….…`): such an issuer's
opaque tokens cannot be used beside Bastion's own authorization server (its JWTs can). One with exactly
Bastion's shape (22 and 43 URL-safe base64 characters around the dot) is not a format any known issuer uses.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence

from ..principal import Principal
from .issuer import ExternalIssuer, peek

Verifier = Callable[[str, str], Awaitable[Principal | None]]

# oauth/grants.py: a 16-byte grant id and a 32-byte secret, each secrets.token_urlsafe (tests check they agree).
OWN_SHAPE = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")


def own_shaped(token: str) -> bool:
    return OWN_SHAPE.fullmatch(token) is not None


class TokenVerifier:
    def __init__(self, own: Verifier | None, issuers: Sequence[ExternalIssuer]) -> None:
        self.own = own
        self.issuers = list(issuers)
        self._by_issuer = {issuer.issuer.rstrip("/"): issuer for issuer in issuers}
        self._introspecting = [issuer for issuer in issuers if issuer.introspection is not None]

    async def __call__(self, token: str, resource: str) -> Principal | None:
        dots = token.count(".")
        if dots == 2:
            return await self._jwt(token, resource)
        if dots == 1 and self.own is not None:
            return await self.own(token, resource)
        if own_shaped(token):
            return None
        for issuer in self._introspecting:
            principal = await issuer.introspect(token, resource)
            if principal is not None:
                return principal
        return None

    async def _jwt(self, token: str, resource: str) -> Principal | None:
        parsed = peek(token)
        if parsed is None:
            return None
        header, claims = parsed
        iss = claims.get("iss")
        issuer = self._by_issuer.get(iss.rstrip("/")) if isinstance(iss, str) else None
        return await issuer.verify_jwt(token, header, claims, resource) if issuer is not None else None
