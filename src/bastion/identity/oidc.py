"""Any OpenID Connect provider, found by discovery: authorization code with PKCE, exchanged server-side.

The ID token comes straight from the token endpoint over TLS, so (OIDC Core 3.1.3.7) TLS stands in for its
signature; its issuer, audience, expiry and nonce are still checked. Identity is the ID token's `sub`, with
profile claims from the userinfo endpoint when the provider has one.

The discovery document must name exactly the configured issuer, and every endpoint in it must be an absolute
https URL (http on loopback only; no user information or fragment: security/endpoints.py), or none of it is
used: its authorization endpoint becomes a redirect for the browser and its token endpoint receives the client
secret. The page says only that the provider is unavailable; the log says which field was wrong.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import time
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from ..security import base64url
from ..security.crypto import same
from ..security.endpoints import endpoint_problem
from .upstream import TokenEndpointProvider, UpstreamIdentity, UpstreamLoginError

DISCOVERY_SECONDS = 3600
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint")
# Members that are URLs Bastion may send a browser or a request to, besides every "*_endpoint" member.
OTHER_URL_MEMBERS = ("jwks_uri", "check_session_iframe")

log = logging.getLogger("bastion.identity")


def endpoint_members(document: dict[str, Any]) -> list[str]:
    """The members of a discovery document that name endpoints, every one of which must be checked."""
    return [name for name in document if name.endswith("_endpoint") or name in OTHER_URL_MEMBERS]


def _jwt_claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64url.decode(payload))
    except (IndexError, ValueError, binascii.Error, orjson.JSONDecodeError):
        raise UpstreamLoginError("the provider returned a malformed ID token") from None
    if not isinstance(claims, dict):
        raise UpstreamLoginError("the provider returned a malformed ID token")
    return claims


class OIDCProvider(TokenEndpointProvider):
    def __init__(
        self,
        name: str,
        issuer: str,
        client_id: str,
        client_secret: str,
        scopes: list[str],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self.http = http or httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        self._discovery: dict[str, Any] | None = None
        self._discovered_at = 0.0

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None or time.monotonic() - self._discovered_at > DISCOVERY_SECONDS:
            document = await self._fetch_discovery()
            problem = self._discovery_problem(document)
            if problem is not None:
                log.warning("upstream %s: discovery document refused: %s", self.name, problem)
                raise UpstreamLoginError(f"Sign-in with {self.name} is unavailable: its configuration is unusable.")
            self._discovery, self._discovered_at = document, time.monotonic()
        return self._discovery

    async def _fetch_discovery(self) -> dict[str, Any]:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            response = await self.http.get(url)
            document = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("upstream %s: %s could not be read (%s)", self.name, url, type(exc).__name__)
            document = None
        else:
            if document is None:
                log.warning("upstream %s: %s answered %d", self.name, url, response.status_code)
        if not isinstance(document, dict):
            raise UpstreamLoginError(f"Sign-in with {self.name} is unavailable: {self.name} could not be reached.")
        return document

    def _discovery_problem(self, document: dict[str, Any]) -> str | None:
        """What makes the document unusable (naming the member, never quoting a value), or None."""
        if document.get("issuer") != self.issuer:
            return f"issuer is not exactly {self.issuer}"
        for name in REQUIRED_ENDPOINTS:
            if name not in document:
                return f"{name} is missing"
        for name in endpoint_members(document):
            problem = endpoint_problem(document[name])
            if problem is not None:
                return f"{name} {problem}"
        return None

    async def authorization_url(self, redirect_uri: str, state: str, code_challenge: str, nonce: str) -> str:
        document = await self.discovery()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        endpoint = str(document["authorization_endpoint"])
        # An endpoint may carry a query of its own, which must be kept (RFC 6749 section 3.1).
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> UpstreamIdentity:
        document = await self.discovery()
        tokens = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )
        claims = self._check_id_token(tokens.get("id_token"), nonce)
        profile = await self._userinfo(document, tokens["access_token"])
        if profile.get("sub") not in (None, claims["sub"]):
            raise UpstreamLoginError(f"{self.name}'s userinfo describes another user")
        return UpstreamIdentity(
            user_id=str(claims["sub"]),
            claims={k: v for k, v in {**claims, **profile}.items() if k in ("name", "email", "preferred_username")},
            token=self._token(tokens),
        )

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        document = await self.discovery()
        headers = {"Accept": "application/json"}
        methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if "client_secret_post" in methods and "client_secret_basic" not in methods:
            form = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
        else:
            basic = base64.b64encode(f"{quote(self.client_id)}:{quote(self.client_secret)}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        try:
            response = await self.http.post(document["token_endpoint"], data=form, headers=headers)
            tokens = response.json()
        except (httpx.HTTPError, ValueError):
            raise UpstreamLoginError(f"{self.name} did not answer") from None
        if response.status_code != 200 or not isinstance(tokens, dict) or "access_token" not in tokens:
            raise UpstreamLoginError(f"{self.name} refused the token request")
        return tokens

    async def revoke(self, token: dict[str, Any]) -> None:
        """Revoke the user's tokens at the provider, where it offers RFC 7009 revocation (best effort)."""
        document = await self.discovery()
        endpoint = document.get("revocation_endpoint")
        if not isinstance(endpoint, str):
            return
        for kind in ("refresh_token", "access_token"):
            value = token.get(kind)
            if not value:
                continue
            form = {
                "token": value,
                "token_type_hint": kind,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
            with contextlib.suppress(httpx.HTTPError):
                await self.http.post(endpoint, data=form)

    def _check_id_token(self, id_token: Any, nonce: str) -> dict[str, Any]:
        if not isinstance(id_token, str):
            raise UpstreamLoginError(f"{self.name} returned no ID token (is 'openid' among the scopes?)")
        claims = _jwt_claims(id_token)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != self.issuer or self.client_id not in audiences:
            raise UpstreamLoginError(f"{self.name}'s ID token was issued by or for someone else")
        if not isinstance(claims.get("exp"), int | float) or claims["exp"] < time.time() - 60:
            raise UpstreamLoginError(f"{self.name}'s ID token has expired")
        if not isinstance(claims.get("nonce"), str) or not same(claims["nonce"], nonce):
            raise UpstreamLoginError(f"{self.name}'s ID token does not belong to this sign-in")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise UpstreamLoginError(f"{self.name}'s ID token names no user")
        return claims

    async def _userinfo(self, document: dict[str, Any], access_token: str) -> dict[str, Any]:
        endpoint = document.get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        try:
            response = await self.http.get(endpoint, headers={"Authorization": f"Bearer {access_token}"})
            profile = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return {}
        return profile if isinstance(profile, dict) else {}
