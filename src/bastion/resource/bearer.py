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

from ..ops.audit import AuditEvent, AuditTrail, bind_request
from ..ops.sampled import SampledLog
from ..ops.telemetry import Telemetry
from ..principal import SCOPE_KEY, Principal
from ..public_url import base_url
from ..store import StoreUnavailable
from ..store.bus import GRANT_REVOKED, Bus
from .challenge import Challenges
from .discovery import IssuerUnavailable

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
        challenges: Challenges,
        bus: Bus | None = None,
        audit: AuditTrail | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.app = app
        self.telemetry = telemetry  # counts each decision, by reason
        self.audit = audit  # names each caller for the events their request raises; counts invalid tokens
        self.verify = verify
        self.challenges = challenges
        self.public_url = challenges.public_url
        self.resource_path = challenges.resource_path
        self.required_scopes = challenges.required_scopes
        self._required = frozenset(challenges.required_scopes)
        # Authorization header, Host -> (principal, until, bus generation it was verified under)
        self._cache: OrderedDict[tuple[bytes, bytes], tuple[Principal, float, int]] = OrderedDict()
        self._pending: dict[tuple[bytes, bytes], asyncio.Future[Principal | None]] = {}
        self.sampled = SampledLog(log)  # anyone can make outages show at will: a flood writes one line per period
        self.bus = bus
        if bus is not None:
            bus.subscribe(GRANT_REVOKED, self.forget)

    def forget(self, event: object = None) -> None:
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
            self._decided("refused", "no_token")
            await self._challenge(send, scope, None)
            return
        if repeated:
            self._decided("refused", "malformed")
            await self._challenge(send, scope, "invalid_request", 400)
            return
        # The common case first, inline: a header seen moments ago. Only a well-formed header that verified is
        # ever remembered, so nothing about it needs checking again (measured: the gate's whole cost per call
        # went from about 3 us to about 1 us; on a ~110 us tools/call that is what keeps authentication cheap).
        key = (authorization, host)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.time() and self._still_trusted(cached[2]):
            principal = cached[0]
        else:
            if authorization[:7].lower() != b"bearer " or len(authorization) > MAX_TOKEN_CHARS + 7:
                self._decided("refused", "malformed")
                await self._challenge(send, scope, "invalid_request", 400)
                return
            try:
                verified = await self._verified(key, authorization[7:].strip().decode("latin-1"), scope)
            except (IssuerUnavailable, StoreUnavailable) as exc:  # no verdict on the token: try again later
                self.sampled.warning("token not checked: %s", exc)
                self._decided("unavailable", type(exc).__name__)
                await _unavailable(send)
                return
            except Exception:
                log.exception("token check failed")
                self._decided("unavailable", "error")
                await _unavailable(send)
                return
            if verified is None:
                self._decided("refused", "invalid_token")
                if self.audit is not None:
                    bind_request(scope)
                    self.audit.record_sampled(AuditEvent("token.invalid", "failure"))
                await self._challenge(send, scope, "invalid_token")
                return
            principal = verified
        scope[SCOPE_KEY] = principal
        if self.audit is not None:
            bind_request(scope)  # read only when an event is recorded: who calls, from where, which request
        if not self._required <= principal.scopes:
            self._decided("refused", "insufficient_scope")
            headers = self.challenges.step_up(host.decode("latin-1"), scope.get("root_path", ""), self.required_scopes)
            await _refuse(send, 403, b'{"error":"insufficient_scope"}', headers)
            return
        if self.telemetry is not None:
            self.telemetry.decision("allowed", "valid_token")
        await self.app(scope, receive, send)

    def _decided(self, decision: str, reason: str) -> None:
        if self.telemetry is not None:
            self.telemetry.decision(decision, reason)

    def _still_trusted(self, generation: int) -> bool:
        """A remembered verification is only as good as the bus that would say it was revoked: while the bus is
        down nothing is remembered, and what was remembered before it went down is not used after."""
        bus = self.bus
        return bus is None or (bus.healthy and bus.generation == generation)

    async def _verified(self, key: tuple[bytes, bytes], token: str, scope: Any) -> Principal | None:
        """Verify a token not remembered (or no longer trusted), and remember it if it may be."""
        now = time.time()
        bus = self.bus
        trusted = bus is None or bus.healthy
        generation = bus.generation if bus is not None else 0
        self._cache.pop(key, None)
        # Keyed by the Host too: without public_url, the resource (and so a token's validity) follows it.
        resource = base_url(scope, self.public_url) + self.resource_path
        # Requests that miss together share one verification instead of queueing at the store.
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self.verify(token, resource))
            self._pending[key] = pending
            pending.add_done_callback(lambda _: self._pending.pop(key, None))
        principal = await asyncio.shield(pending)
        if principal is not None and trusted:
            until = min(now + CACHE_SECONDS, principal.expires_at or now + CACHE_SECONDS)
            self._cache[key] = (principal, until, generation)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return principal

    async def _challenge(self, send: Any, scope: Any, error: str | None, status: int = 401) -> None:
        body = b'{"error":"' + (error or "unauthorized").encode() + b'"}'
        challenge = self.challenges.unauthorized(scope, error, status)
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
