"""The bearer gate in front of /mcp: no valid access token for this resource, no MCP.

A request without a token gets 401 with `WWW-Authenticate: Bearer resource_metadata="..."` so the client
can discover where to get one (and, when every caller needs some scopes, `scope="..."` so it asks for just those
first); a bad token adds `error="invalid_token"`, and a token without those scopes gets 403 insufficient_scope.
When the token's issuer or the store cannot be reached, the answer is 503, not a verdict on the token. A valid token's
Principal goes into the ASGI scope for the MCP engine. Verified tokens are remembered briefly (never past their
expiry, and forgotten at once when revoked through this process) so that checking stays cheap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ..principal import SCOPE_KEY, Principal
from ..public_url import base_url, base_url_for_host
from ..store import StoreUnavailable
from .discovery import IssuerUnavailable
from .metadata import metadata_url

log = logging.getLogger("bastion.resource")

CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000
MAX_TOKEN_CHARS = 8192  # room for a JWT with many claims; anything bigger is refused unread
Verifier = Callable[[str, str], Awaitable[Principal | None]]


class BearerGate:
    def __init__(
        self,
        app: Any,
        verify: Verifier,
        public_url: str | None,
        resource_path: str,
        required_scopes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.required_scopes = required_scopes
        self._required = frozenset(required_scopes)
        self.verify = verify
        self.public_url = public_url
        self.resource_path = resource_path
        self._cache: OrderedDict[tuple[str, bytes], tuple[Principal, float]] = OrderedDict()
        self._pending: dict[tuple[str, bytes], asyncio.Future[Principal | None]] = {}

    def forget(self) -> None:
        """Drop every remembered verification (after a revocation)."""
        self._cache.clear()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One pass over the headers: this runs on every request.
        authorization: bytes | None = None
        host = b""
        repeated = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                repeated = authorization is not None
                authorization = value
            elif name == b"host":
                host = value
        if authorization is None:
            await self._challenge(send, base_url(scope, self.public_url), None)
            return
        if repeated or authorization[:7].lower() != b"bearer " or len(authorization) > MAX_TOKEN_CHARS + 7:
            await self._challenge(send, base_url(scope, self.public_url), "invalid_request", 400)
            return
        try:
            principal = await self._principal(authorization[7:].strip().decode("latin-1"), host, scope)
        except (IssuerUnavailable, StoreUnavailable) as exc:  # no verdict on the token: try again later
            log.warning("token not checked: %s", exc)
            await _unavailable(send)
            return
        except Exception:
            log.exception("token check failed")
            await _unavailable(send)
            return
        if principal is None:
            await self._challenge(send, base_url(scope, self.public_url), "invalid_token")
            return
        if not self._required <= principal.scopes:
            headers = self.challenge(host.decode("latin-1"), self.required_scopes)
            await _refuse(send, 403, b'{"error":"insufficient_scope"}', headers)
            return
        scope[SCOPE_KEY] = principal
        await self.app(scope, receive, send)

    def challenge(self, host: str | None, needed: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
        """Headers for a 403 answering a call that lacked scopes (the MCP endpoint calls this)."""
        base = base_url_for_host(host, self.public_url)
        needed = tuple(dict.fromkeys((*self.required_scopes, *needed)))  # every scope the call needs, once
        return [(b"www-authenticate", self.insufficient_scope(base, " ".join(needed)).encode())]

    def insufficient_scope(self, base: str, needed: str) -> str:
        # offline_access is about refresh tokens, never what a call needs: it stays out of challenges.
        scopes = " ".join(s for s in needed.split() if s != "offline_access")
        metadata = metadata_url(base, self.resource_path)
        return f'Bearer error="insufficient_scope", scope="{scopes}", resource_metadata="{metadata}"'

    async def _principal(self, token: str, host: bytes, scope: Any) -> Principal | None:
        now = time.time()
        # Keyed by the Host too: without public_url, the resource (and so a token's validity) follows it.
        key = (token, host)
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > now:
                return cached[0]
            del self._cache[key]
        resource = base_url(scope, self.public_url) + self.resource_path
        # Requests that miss together share one verification instead of queueing at the store.
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self.verify(token, resource))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        principal = await asyncio.shield(pending)
        if principal is not None:
            until = min(now + CACHE_SECONDS, principal.expires_at or now + CACHE_SECONDS)
            self._cache[key] = (principal, until)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    async def _challenge(self, send: Any, base: str, error: str | None, status: int = 401) -> None:
        challenge = f'Bearer resource_metadata="{metadata_url(base, self.resource_path)}"'
        if self.required_scopes and status == 401:
            challenge += f', scope="{" ".join(self.required_scopes)}"'
        if error:
            challenge += f', error="{error}"'
        body = b'{"error":"' + (error or "unauthorized").encode() + b'"}'
        await _refuse(send, status, body, [(b"www-authenticate", challenge.encode())])


async def _refuse(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _unavailable(send: Any) -> None:
    await _refuse(send, 503, b'{"error":"temporarily_unavailable"}', [(b"retry-after", b"5")])
