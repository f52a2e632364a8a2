"""An external authorization server's access tokens: JWTs checked against its keys, opaque ones introspected.

A JWT must pass every one of these, or it is refused as invalid_token:
- the header names an asymmetric algorithm the issuer is allowed and the key is held to (never `none`, never
  HMAC), has no `crit` (no extension is understood here), and a `typ`, if any, of an access token;
  `jku`, `jwk`, `x5u` and `x5c` are ignored: keys come only from the issuer's own JWK Set;
- the signature verifies with that key;
- `iss` equals the issuer exactly; `aud` contains this resource (or the configured audience); `exp`, `sub`
  present; `exp`, `nbf` and `iat`, when present, are JSON numbers (numeric_date.py) and hold with
  LEEWAY_SECONDS of clock skew;
- no `cnf`: a sender-constrained (DPoP or mTLS) token cannot be honoured here, so it is not taken as a bearer one.
Opaque tokens go to RFC 7662 introspection, with the same audience, issuer and time rules on the answer. Which
tokens may be sent there at all is decided by tokens.py; here, a refusal is remembered for a few seconds and
calls are rate-limited, so a flood of made-up tokens does not become a flood at the issuer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import orjson
from jwt.exceptions import PyJWTError

from ..principal import Principal
from ..security import base64url
from ..settings import IssuerSettings
from .discovery import IssuerUnavailable, Metadata, fetch_json
from .jwks import KeySet
from .numeric_date import numeric_date, time_claims_are_dates
from .presets import claim_map
from .refusals import RecentRefusals
from .throttle import TokenBucket

log = logging.getLogger("bastion.resource")

LEEWAY_SECONDS = 30
INTROSPECTIONS_AT_ONCE = 16
INTROSPECTIONS_PER_SECOND = 50.0  # per issuer; each live token is asked about once per 10 s (bearer.py's cache)
INTROSPECTION_BURST = 100
REFUSAL_SECONDS = 5.0  # long enough to absorb a retry storm, short enough that a just-issued token soon works
REFUSALS_REMEMBERED = 10_000
# RFC 9068 says at+jwt; Keycloak, Auth0 and Entra send JWT. Anything else (an ID token's, a logout token's...) is
# some other kind of token.
ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt", "jwt"}


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A JWT's header and claims, NOT verified: only to choose the issuer and key that will verify it."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header, claims = (orjson.loads(base64url.decode(part)) for part in parts[:2])
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return header, claims


class ExternalIssuer:
    def __init__(
        self, settings: IssuerSettings, http: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = settings.name
        self.issuer = settings.issuer
        self.audience = settings.audience
        self.jwks_uri = settings.jwks_uri
        self.http = http
        # One clock for every cache and limit here, so that a test moves them all at once.
        self.metadata = Metadata(settings.issuer, http, clock)
        self.keys = KeySet(self._key_set, set(settings.algorithms), settings.name, clock)
        self.claims = claim_map(settings.preset, settings.scope_claims, settings.subject_claim)
        secret = settings.introspection_secret()
        self.introspection: tuple[str, str] | None = None
        if settings.introspection_client_id and secret:
            self.introspection = (settings.introspection_client_id, secret)
        self._introspecting = asyncio.Semaphore(INTROSPECTIONS_AT_ONCE)
        self._introspection_budget = TokenBucket(INTROSPECTIONS_PER_SECOND, INTROSPECTION_BURST, clock)
        self._refusals = RecentRefusals(REFUSAL_SECONDS, REFUSALS_REMEMBERED, clock)

    async def exact_issuer(self) -> str:
        """The issuer as its tokens spell it: the metadata's own spelling, or the configured one when the keys'
        location is configured and no metadata is needed."""
        if self.jwks_uri is not None and self.introspection is None:
            return self.issuer
        return str((await self.metadata.get())["issuer"])

    async def _key_set(self) -> dict[str, Any]:
        uri = self.jwks_uri or (await self.metadata.get()).get("jwks_uri")
        if not isinstance(uri, str):
            raise IssuerUnavailable(f"{self.name}: the metadata names no jwks_uri")
        status, document = await fetch_json(self.http, self.http.build_request("GET", uri))
        if status != 200 or not isinstance(document, dict):
            raise IssuerUnavailable(f"{self.name}: the JWK Set answered {status}")
        return document

    async def verify_jwt(
        self, token: str, header: dict[str, Any], unverified: dict[str, Any], resource: str
    ) -> Principal | None:
        alg, kid, typ = header.get("alg"), header.get("kid"), header.get("typ")
        if not isinstance(alg, str) or "crit" in header or not (kid is None or isinstance(kid, str)):
            return self._refused("a malformed header, or crit")
        # Before PyJWT, which would read "9999999999" or true as a date (and, in older versions, let int() raise
        # on other values); again on the verified claims below, which are what counts.
        if not time_claims_are_dates(unverified):
            return self._refused("exp, nbf or iat is not a number of seconds")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES):
            return self._refused(f"typ {typ!r} is not an access token's")
        issuer = await self.exact_issuer()
        key = await self.keys.key(kid, alg)
        if key is None:
            return self._refused(f"no key {kid!r} for {alg!r}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience or resource,
                issuer=issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except PyJWTError as exc:
            return self._refused(str(exc))
        if claims.get("iss") != issuer or "cnf" in claims or not time_claims_are_dates(claims):
            return self._refused("another issuer, a sender-constrained (cnf) token, or a time claim not a number")
        return self._principal(claims, resource)

    def _refused(self, reason: str) -> Principal | None:
        # Why a token was refused, for whoever debugs a client; never the token itself.
        log.debug("%s: token refused: %s", self.name, reason)
        return None

    async def introspect(self, token: str, resource: str) -> Principal | None:
        """RFC 7662: ask the issuer whether an opaque token is live, and what it grants. Raises IssuerUnavailable
        when the issuer cannot answer, or when this process is over its rate of questions to it."""
        credentials = self.introspection
        if credentials is None:
            return None
        refusal = RecentRefusals.key(token, resource)
        if self._refusals.refused(refusal):
            return None
        # Over the limit is "cannot check now" (503), not "invalid" (401): a 401 would make a client throw away a
        # token that may well be valid and send its user to sign in again, while a 503 only asks it to retry.
        if not self._introspection_budget.take():
            raise IssuerUnavailable(f"{self.name}: over {INTROSPECTIONS_PER_SECOND:g} introspections a second")
        principal = await self._ask(token, resource, credentials)
        if principal is None:
            self._refusals.add(refusal)
        return principal

    async def _ask(self, token: str, resource: str, credentials: tuple[str, str]) -> Principal | None:
        metadata = await self.metadata.get()
        endpoint = metadata.get("introspection_endpoint")
        if not isinstance(endpoint, str):
            raise IssuerUnavailable(f"{self.name}: the metadata names no introspection_endpoint")
        client_id, secret = credentials
        # RFC 6749 section 2.3.1: both halves are form-encoded before they are joined and base64-encoded.
        basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
        request = self.http.build_request(
            "POST",
            endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
        )
        async with self._introspecting:  # however many the rate allows, only so many at once
            status, answer = await fetch_json(self.http, request)
        if status != 200 or not isinstance(answer, dict):
            raise IssuerUnavailable(f"{self.name}: introspection answered {status}")
        if answer.get("active") is not True or answer.get("token_type") == "refresh_token":
            return None
        if answer.get("iss", metadata["issuer"]) != metadata["issuer"] or "cnf" in answer:
            return None
        audiences = answer.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or (self.audience or resource) not in audiences:
            return None
        if not time_claims_are_dates(answer):
            return None
        now = time.time()
        exp, nbf = numeric_date(answer.get("exp", now)), numeric_date(answer.get("nbf", now))
        if exp is None or nbf is None or exp <= now - LEEWAY_SECONDS or nbf > now + LEEWAY_SECONDS:
            return None
        return self._principal(answer, resource)

    def _principal(self, claims: dict[str, Any], resource: str) -> Principal | None:
        subject = self.claims.subject(claims)
        expires_at = numeric_date(claims.get("exp"))
        if subject is None:
            return None
        return Principal(
            subject=f"{self.name}:{subject}",
            client_id=self.claims.client(claims),
            scopes=self.claims.scopes(claims),
            resource=resource,
            expires_at=expires_at,
            claims={k: v for k, v in claims.items() if k != "active"},
        )
