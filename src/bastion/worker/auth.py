"""Worker tokens: HS256 JWTs signed with the shared worker secret, checked strictly.

Accepted: exactly `alg: HS256`, `aud` "worker" (or a list holding it), `ver` "1", an `exp` in the future whose
lifetime is capped, `nbf`/`iat` not in the future (30 s leeway). Refused: any other algorithm (`none` included),
a `crit` header, oversized tokens. `jku`, `jwk` and `x5u` are ignored: the key is the shared secret, always.
Unlike Arcade's worker, `exp` is required unless the compatibility switch says otherwise. The secret itself is
held to settings/secret_strength.py at start-up (WorkerSettings.secret_problem).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson

from ..security import base64url

MAX_TOKEN_BYTES = 8192
LEEWAY = 30


class WorkerTokenError(Exception):
    """Why a worker token was refused (safe to show: it never contains the secret)."""


def mint(secret: str, seconds: int = 300) -> str:
    """A short-lived worker token (for testing, as `bastion worker-token`)."""
    now = int(time.time())
    header = base64url.encode(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = base64url.encode(orjson.dumps({"aud": "worker", "ver": "1", "iat": now, "exp": now + seconds}))
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64url.encode(signature)}"


def verify(token: str, secret: str, max_seconds: int, require_exp: bool = True) -> dict[str, Any]:
    """The token's claims, or WorkerTokenError."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise WorkerTokenError("malformed token")
    header_b64, payload_b64, signature_b64 = token.split(".")
    try:
        header = orjson.loads(base64url.decode(header_b64))
        signature = base64url.decode(signature_b64)
    except (ValueError, orjson.JSONDecodeError):
        raise WorkerTokenError("malformed token") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise WorkerTokenError("only HS256 worker tokens are accepted")
    if "crit" in header:
        raise WorkerTokenError("critical header extensions are not supported")
    expected = hmac.new(secret.encode(), f"{header_b64}.{payload_b64}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise WorkerTokenError("bad signature")
    try:
        claims = orjson.loads(base64url.decode(payload_b64))
    except (ValueError, orjson.JSONDecodeError):
        raise WorkerTokenError("malformed claims") from None
    if not isinstance(claims, dict):
        raise WorkerTokenError("malformed claims")
    audience = claims.get("aud")
    if not (audience == "worker" or (isinstance(audience, list) and "worker" in audience)):
        raise WorkerTokenError("the token is not for the worker")
    if claims.get("ver") != "1":
        raise WorkerTokenError("unsupported token version")
    now = time.time()
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float) or value > now + LEEWAY):
            raise WorkerTokenError(f"{name} is in the future")
    expires = claims.get("exp")
    if expires is None:
        if require_exp:
            raise WorkerTokenError("exp is required")
        return claims
    if not isinstance(expires, int | float) or expires <= now - LEEWAY:
        raise WorkerTokenError("the token has expired")
    iat = claims.get("iat")
    issued: float = iat if isinstance(iat, int | float) else now
    if expires - issued > max_seconds + LEEWAY:
        raise WorkerTokenError(f"the token lives longer than the {max_seconds} s allowed")
    return claims
