"""The MCP endpoint's entry: read the request, check what every request must carry, and hand it to its era.

A POST whose MCP-Protocol-Version header names 2026-07-28 goes to the modern (stateless) handler; `initialize`
and everything else to the legacy one, which keeps sessions. GET and DELETE exist only for legacy sessions.
"""

from __future__ import annotations

from ...ops.access import note_of
from ...principal import SCOPE_KEY
from .. import versions
from ..errors import McpError, Refusal, Refused
from ..headers import mismatch
from ..jsonrpc import Request, parse
from ..notify import Broadcaster
from ..server import Server, unsupported_version
from ..session import Session, SessionTable
from .legacy import LegacyHandler
from .modern import ModernHandler
from .run import Challenge, Runner
from .wire import Receive, Scope, Send, accepts, read_body, read_headers, reject

UNSUPPORTED_MEDIA_TYPE = "Unsupported Media Type: Content-Type must be application/json"
NOT_ACCEPTABLE = "Not Acceptable: Accept must include application/json and text/event-stream"
# The parameter that names what a request is about (the access log's mcp_target).
TARGETS = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "resources/subscribe": "uri",
    "resources/unsubscribe": "uri",
}


class StreamableHTTP:
    def __init__(
        self,
        server: Server,
        broadcaster: Broadcaster,
        *,
        max_body_bytes: int = 1_048_576,
        stateful: bool = True,
        json_response: bool = False,
        sessions: SessionTable | None = None,
        challenge: Challenge | None = None,
    ) -> None:
        self.server = server
        self.broadcaster = broadcaster
        self.max_body_bytes = max_body_bytes
        self.stateful = stateful
        self.json_response = json_response
        self.sessions = sessions if sessions is not None else SessionTable(broadcaster=broadcaster)
        self._runner = Runner(server, challenge)
        self.modern = ModernHandler(server, broadcaster, self._runner, json_response=json_response)
        self.legacy = LegacyHandler(
            server, broadcaster, self.sessions, self._runner, stateful=stateful, json_response=json_response
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = read_headers(scope)
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, headers)
        elif method not in ("GET", "DELETE"):
            await _not_allowed(send, b"GET, POST, DELETE" if self.stateful else b"POST")
        elif not self.stateful or headers.get("mcp-protocol-version") in versions.MODERN:
            # GET and DELETE name a legacy session: 2026-07-28 requests and stateless servers have none.
            await _not_allowed(send, b"POST")
        elif method == "GET":
            await self.legacy.get(headers, scope.get(SCOPE_KEY), receive, send)
        else:
            await self.legacy.delete(headers, scope.get(SCOPE_KEY), send)

    async def _post(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        content_type = headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            await reject(send, Refused(Refusal.UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_MEDIA_TYPE))
            return
        accept = headers.get("accept")
        if accept and not accepts(accept, "application/json") and not accepts(accept, "text/event-stream"):
            await reject(send, Refused(Refusal.NOT_ACCEPTABLE, NOT_ACCEPTABLE))
            return
        body = await read_body(receive, headers, self.max_body_bytes)
        if body is None:
            too_large = f"Payload Too Large: the limit is {self.max_body_bytes} bytes"
            await reject(send, Refused(Refusal.PAYLOAD_TOO_LARGE, too_large))
            return
        try:
            message = parse(body)
        except McpError as exc:
            await reject(send, exc)
            return
        if (note := note_of(scope)) is not None and isinstance(message, Request):
            note.mcp_method, note.mcp_target = message.method, _target(message)
        version = headers.get("mcp-protocol-version")
        principal = scope.get(SCOPE_KEY)
        if version in versions.MODERN:
            await self.modern.post(message, headers, version, principal, receive, send, scope.get("root_path", ""))
        elif isinstance(message, Request) and message.method == "initialize":
            await self.legacy.initialize(message, principal, send)
        elif version is not None and version not in versions.LEGACY_HEADERS:
            await reject(send, unsupported_version(version), getattr(message, "id", None))
        elif isinstance(message, Request) and _is_modern_body(message):
            # A modern body without its header: the spec's header mismatch.
            await reject(send, mismatch("the MCP-Protocol-Version header is required"), message.id)
        else:
            await self.legacy.post(message, headers, principal, receive, send, scope.get("root_path", ""))

    def close_session(self, session: Session) -> None:
        self.legacy.close_session(session)


async def _not_allowed(send: Send, allow: bytes) -> None:
    await reject(send, Refused(Refusal.METHOD_NOT_ALLOWED, "Method not allowed"), None, [(b"allow", allow)])


def _is_modern_body(message: Request) -> bool:
    meta = message.params.get("_meta")
    return message.method == "server/discover" or (
        isinstance(meta, dict) and meta.get(versions.META_PROTOCOL_VERSION) in versions.MODERN
    )


def _target(message: Request) -> str | None:
    """What a request names, for the access log: the tool or prompt, or the resource's URI."""
    key = TARGETS.get(message.method)
    value = message.params.get(key) if key else None
    return value if isinstance(value, str) else None
