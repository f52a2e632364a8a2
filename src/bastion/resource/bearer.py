"""The bearer gate in front of /mcp: no valid access token for this resource, no MCP.

A request without a token gets 401 with `WWW-Authenticate: Bearer resource_metadata="..."` so the client
can discover where to get one; a bad token adds `error="invalid_token"`. A valid token's Principal goes into
the ASGI scope for the MCP engine. Verified tokens are remembered briefly (never past their expiry, and
forgotten at once when revoked through this process) so that checking stays cheap.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ..mcp.policy import NEEDED_SCOPES
from ..principal import SCOPE_KEY, Principal
from ..public_url import base_url
from .metadata import metadata_url

CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000
MAX_TOKEN_CHARS = 4096
Verifier = Callable[[str, str], Awaitable[Principal | None]]


class BearerGate:
    def __init__(self, app: Any, verify: Verifier, public_url: str | None, resource_path: str) -> None:
        self.app = app
        self.verify = verify
        self.public_url = public_url
        self.resource_path = resource_path
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def forget(self) -> None:
        """Drop every remembered verification (after a revocation)."""
        self._cache.clear()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = [v for k, v in scope["headers"] if k == b"authorization"]
        base = base_url(scope, self.public_url)
        if not authorization:
            await self._challenge(send, base, None)
            return
        value = authorization[0].decode("latin-1")
        if len(authorization) > 1 or value[:7].lower() != "bearer " or len(value) > MAX_TOKEN_CHARS + 7:
            await self._challenge(send, base, "invalid_request", 400)
            return
        principal = await self._principal(value[7:].strip(), base + self.resource_path)
        if principal is None:
            await self._challenge(send, base, "invalid_token")
            return
        scope[SCOPE_KEY] = principal

        async def send_with_challenge(message: Any) -> None:
            # The MCP engine names the scopes a refused call needs; here they become the step-up challenge.
            if message["type"] == "http.response.start" and message["status"] == 403:
                headers = message.get("headers", [])
                needed = [v.decode("latin-1") for k, v in headers if k == NEEDED_SCOPES]
                if needed:
                    kept = [(k, v) for k, v in headers if k != NEEDED_SCOPES]
                    challenge = self.insufficient_scope(base, needed[0])
                    message = {**message, "headers": [*kept, (b"www-authenticate", challenge.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_challenge)

    def insufficient_scope(self, base: str, needed: str) -> str:
        # offline_access is about refresh tokens, never what a call needs: it stays out of challenges.
        scopes = " ".join(s for s in needed.split() if s != "offline_access")
        metadata = metadata_url(base, self.resource_path)
        return f'Bearer error="insufficient_scope", scope="{scopes}", resource_metadata="{metadata}"'

    async def _principal(self, token: str, resource: str) -> Principal | None:
        now = time.time()
        key = f"{resource} {token}"
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > now:
                return cached[0]
            del self._cache[key]
        principal = await self.verify(token, resource)
        if principal is not None:
            until = min(now + CACHE_SECONDS, principal.expires_at or now + CACHE_SECONDS)
            self._cache[key] = (principal, until)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    async def _challenge(self, send: Any, base: str, error: str | None, status: int = 401) -> None:
        challenge = f'Bearer resource_metadata="{metadata_url(base, self.resource_path)}"'
        if error:
            challenge += f', error="{error}"'
        body = b'{"error":"' + (error or "unauthorized").encode() + b'"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", challenge.encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
