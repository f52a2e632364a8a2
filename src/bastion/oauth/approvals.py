"""Remembered approvals: the browser carries, in one signed cookie, which (client, redirect_uri, resource,
subject) combinations its user has approved, so the consent screen is not shown again for them.

The cookie is HMAC-signed with a key from settings (random per process if none is configured, which then only
forgets approvals on restart); a tampered, expired, foreign, look-alike or duplicated cookie is simply ignored.
It is capped in size: the oldest approvals are dropped first. A remembered approval is used silently only for
navigations the user made themselves (Sec-Fetch-Site same-origin or none); anything else sees the consent screen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..security import base64url
from ..security.cookies import MAX_COOKIE_BYTES, host_cookie, read_host_cookie
from ..security.sealed import seal, unseal

COOKIE = "bastion-approvals"
DAYS = 30
MAX_ENTRIES = 20


def _pack(token: str) -> str:
    # Cookie values must be plain tokens: carry the sealed value base64url-encoded.
    return base64url.encode(token.encode())


def _unpack(value: str) -> str | None:
    try:
        return base64url.decode(value).decode()
    except (ValueError, UnicodeDecodeError):
        return None


class Approvals:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def read(self, scope: Mapping[str, Any]) -> list[list[Any]]:
        """The unexpired approvals this request's cookie carries (`scope`: the ASGI scope, `request.scope`)."""
        raw = read_host_cookie(scope, COOKIE)
        if not raw or len(raw) > MAX_COOKIE_BYTES:
            return []
        token = _unpack(raw)
        entries = unseal(self.key, "approvals", token) if token else None
        if not isinstance(entries, list):
            return []
        now = time.time()
        return [
            e for e in entries if isinstance(e, list) and len(e) == 5 and isinstance(e[4], int | float) and e[4] > now
        ]

    def subject_for(self, scope: Mapping[str, Any], client_id: str, redirect_uri: str, resource: str) -> str | None:
        """The subject who approved exactly this client, redirect URI and resource in this browser, if any."""
        for entry_client, entry_redirect, entry_resource, subject, _ in self.read(scope):
            if (entry_client, entry_redirect, entry_resource) == (client_id, redirect_uri, resource):
                return str(subject)
        return None

    def forget(self, scope: Mapping[str, Any], client_id: str) -> str | None:
        """The Set-Cookie value dropping every approval of `client_id` in this browser (its user revoked it: the
        next authorization asks again); None when the cookie holds none."""
        entries = self.read(scope)
        kept = [e for e in entries if e[0] != client_id]
        if len(kept) == len(entries):
            return None
        if not kept:
            return host_cookie(COOKIE, "", 0)
        return host_cookie(COOKIE, _pack(seal(self.key, "approvals", kept, DAYS * 86400)), DAYS * 86400)

    def remember(self, scope: Mapping[str, Any], client_id: str, redirect_uri: str, resource: str, subject: str) -> str:
        """The Set-Cookie value adding this approval (newest first, oldest dropped to fit)."""
        kept = [
            e
            for e in self.read(scope)
            if e[:4] != [client_id, redirect_uri, resource, subject] and e[:3] != [client_id, redirect_uri, resource]
        ]
        entries = [[client_id, redirect_uri, resource, subject, int(time.time() + DAYS * 86400)], *kept]
        entries = entries[:MAX_ENTRIES]
        while True:
            value = _pack(seal(self.key, "approvals", entries, DAYS * 86400))
            if len(value) <= MAX_COOKIE_BYTES - 100 or len(entries) == 1:
                return host_cookie(COOKIE, value, DAYS * 86400)
            entries = entries[:-1]
