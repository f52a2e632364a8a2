"""A local authorization server that signs whatever a test asks, to attack Bastion's token checks with.

It speaks the real protocol (OpenID discovery, a JWK Set, RFC 7662 introspection with client_secret_basic), and
holds an RSA and an EC signing key. `mint` signs any claims with any header; opaque tokens for introspection are
registered with `opaque`. Counters show how often Bastion fetched the keys, and `introspected` lists every
token Bastion asked about (so a test can show that a token never reached this issuer). The happy path with a real
authorization server is tests/e2e/test_external_issuer.py (oidc-provider); this one exists to be hostile.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.local_server import free_port, serve_in_thread

INTROSPECTION_CLIENT = ("bastion-rs", "introspection-secret-0123456789")


def _jwk(key: Any, algorithm: Any, kid: str, alg: str | None) -> dict[str, Any]:
    jwk = algorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update({"kid": kid, "use": "sig"})
    if alg:
        jwk["alg"] = alg
    return jwk


@dataclass
class LocalIssuer:
    issuer: str = ""  # set once serving
    rsa_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ec_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    rsa_alg: str | None = "RS256"  # the alg the JWK Set declares for the RSA key (None: none declared)
    jwks_fetches: int = 0
    metadata_fetches: int = 0
    introspections: int = 0
    introspected: list[str] = field(default_factory=list)  # every token sent to /introspect, in order
    opaque_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False  # answer 503 to everything
    metadata_issuer: str | None = None  # what discovery claims the issuer is (default: the real one)

    def jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                _jwk(self.rsa_key, RSAAlgorithm, "rsa-1", self.rsa_alg),
                _jwk(self.ec_key, ECAlgorithm, "ec-1", "ES256"),
                # A symmetric key in a public set must never be used by a resource server.
                {"kty": "oct", "kid": "oct-1", "k": base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")},
            ]
        }

    def rsa_public_pem(self) -> bytes:
        return self.rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def claims(self, audience: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": audience,
            "client_id": "client-1",
            "scope": "notes:read",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_hex(8),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, claims: dict[str, Any], *, alg: str = "RS256", kid: str | None = "rsa-1", **header: Any) -> str:
        key: Any = self.ec_key if alg.startswith("ES") else self.rsa_key
        headers = {"typ": "at+jwt", **header}
        if kid is not None:
            headers["kid"] = kid
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    def opaque(self, answer: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(24)
        self.opaque_tokens[token] = answer
        return token

    # --- the server ---------------------------------------------------------------------------------------
    async def discovery(self, request: Request) -> Response:
        self.metadata_fetches += 1
        if self.down:
            return Response(status_code=503)
        return JSONResponse(
            {
                "issuer": self.metadata_issuer or self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "introspection_endpoint": f"{self.issuer}/introspect",
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "response_types_supported": ["code"],
            }
        )

    async def key_set(self, request: Request) -> Response:
        self.jwks_fetches += 1
        if self.down:
            return Response(status_code=503)
        return JSONResponse(self.jwks())

    async def introspect(self, request: Request) -> Response:
        self.introspections += 1
        token = str((await request.form()).get("token"))
        self.introspected.append(token)  # counted whatever the answer: being sent here is the leak
        if self.down:
            return Response(status_code=503)
        expected = base64.b64encode(":".join(INTROSPECTION_CLIENT).encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, 401)
        answer = self.opaque_tokens.get(token)
        return JSONResponse(answer if answer is not None else {"active": False})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.key_set),
                Route("/introspect", self.introspect, methods=["POST"]),
            ]
        )


@contextmanager
def local_issuer(**options: Any) -> Iterator[LocalIssuer]:
    """Serve a LocalIssuer on 127.0.0.1 in a thread."""
    issuer = LocalIssuer(**options)
    port = free_port()
    issuer.issuer = f"http://127.0.0.1:{port}"  # known before serving: the metadata names it
    with serve_in_thread(issuer.app(), port):
        yield issuer
