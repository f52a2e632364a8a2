"""Integrity-protected tokens for state that travels through an untrusted party and comes back.

`seal` signs a JSON value with HMAC-SHA256; `unseal` returns it only if the signature verifies (compared in
constant time) and it has not expired. The payload is signed, not hidden: put nothing secret in it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson

from . import base64url

MAX_TOKEN_CHARS = 256 * 1024


def seal(key: bytes, purpose: str, value: Any, ttl_seconds: float) -> str:
    body = base64url.encode(orjson.dumps({"v": value, "exp": int(time.time() + ttl_seconds)}))
    mac = hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{base64url.encode(mac)}"


def unseal(key: bytes, purpose: str, token: object) -> Any | None:
    """The sealed value, or None for anything forged, altered, expired, oversized or malformed."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    expected = hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(base64url.decode(mac), expected):
            return None
        payload = orjson.loads(base64url.decode(body))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) or payload["exp"] < time.time():
        return None
    return payload.get("v")
