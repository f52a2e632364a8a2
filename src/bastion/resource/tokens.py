"""Which verifier a bearer token goes to: Bastion's own grants, an external issuer's keys, or introspection.

Bastion's own tokens have the shape `<grant id>.<secret>` (one dot); a JWT has two and names its issuer, which
picks the one configured issuer allowed to vouch for it (its `iss` is still checked exactly after the
signature); anything else is opaque and asked of each issuer that has introspection configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from ..principal import Principal
from .issuer import ExternalIssuer, peek

Verifier = Callable[[str, str], Awaitable[Principal | None]]


class TokenVerifier:
    def __init__(self, own: Verifier | None, issuers: Sequence[ExternalIssuer]) -> None:
        self.own = own
        self.issuers = list(issuers)
        self._by_issuer = {issuer.issuer.rstrip("/"): issuer for issuer in issuers}
        self._introspecting = [issuer for issuer in issuers if issuer.introspection is not None]

    async def __call__(self, token: str, resource: str) -> Principal | None:
        dots = token.count(".")
        if dots == 2 and self._by_issuer:
            parsed = peek(token)
            if parsed is None:
                return None
            header, claims = parsed
            iss = claims.get("iss")
            issuer = self._by_issuer.get(iss.rstrip("/")) if isinstance(iss, str) else None
            return await issuer.verify_jwt(token, header, resource) if issuer is not None else None
        if dots == 1 and self.own is not None:
            principal = await self.own(token, resource)
            if principal is not None:
                return principal
        for issuer in self._introspecting:
            principal = await issuer.introspect(token, resource)
            if principal is not None:
                return principal
        return None
