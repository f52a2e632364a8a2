"""Integrity-protected tokens for state that travels through an untrusted party and comes back.

`seal` signs a JSON value with HMAC-SHA256; `unseal` returns it only if the signature verifies (compared in
constant time) and it has not expired. The payload is signed, not hidden: put nothing secret in it.
Both read the wall clock unless given `now` (seconds since the epoch), which tests pass instead of patching time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson

from . import base64url

MAX_TOKEN_CHARS = 256 * 1024


def seal(key: bytes, purpose: str, value: Any, ttl_seconds: float, now: float | None = None) -> str:
    issued = time.time() if now is None else now
    body = base64url.encode(orjson.dumps({"v": value, "exp": int(issued + ttl_seconds)}))
    mac = hmac.new(key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()
    return f"{body}.{base64url.encode(mac)}"


def unseal(key: bytes, purpose: str, token: object, now: float | None = None) -> Any | None:
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
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        return None
    if payload["exp"] < (time.time() if now is None else now):
        return None
    return payload.get("v")
