"""Streamable HTTP: the MCP endpoint as a plain ASGI application.

One endpoint serves both eras. A request whose MCP-Protocol-Version header names 2026-07-28 is served
statelessly (headers checked against the body); `initialize` opens a legacy session, and later legacy
requests name it with Mcp-Session-Id. Every request first passes the Host/Origin gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..principal import SCOPE_KEY
from . import versions
from .errors import INVALID_PARAMS, INVALID_REQUEST, McpError
from .exchange import Exchange, progress_token
from .headers import check_params, check_standard, mismatch
from .jsonrpc import Notification, Request, Response, error_message, notification_message, parse, result_message
from .notify import Broadcaster, Listener
from .policy import NEEDED_SCOPES, InsufficientScope
from .reply import Reply, send_json, sse_event
from .server import Server, check_modern_meta, unsupported_version
from .session import Session, SessionTable

log = logging.getLogger("bastion.mcp")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# HTTP status for JSON-RPC errors on the 2026-07-28 path; everything else is 200.
MODERN_STATUS = {-32700: 400, -32600: 400, -32602: 400, -32020: 400, -32021: 400, -32022: 400, -32601: 404}
USER_CODE_METHODS = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})
KEEPALIVE_SECONDS = 15.0


class Cancellable:
    """A request's task, cancelled on purpose (client disconnect or notifications/cancelled)."""

    __slots__ = ("requested", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.requested = False

    def cancel(self) -> None:
        self.requested = True
        self.task.cancel()


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
    ) -> None:
        self.server = server
        self.broadcaster = broadcaster
        self.max_body_bytes = max_body_bytes
        self.stateful = stateful
        self.json_response = json_response
        self.sessions = sessions if sessions is not None else SessionTable()
        self.sessions.on_remove = self._forget
        # Set by the authentication layer: (Host, needed scopes) -> headers of a step-up challenge.
        self.challenge: Callable[[str | None, tuple[str, ...]], list[tuple[bytes, bytes]]] | None = None

    # --- entry --------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, headers)
        elif method == "GET":
            await self._get(scope, receive, send, headers)
        elif method == "DELETE":
            await self._delete(scope, send, headers)
        else:
            allow = b"GET, POST, DELETE" if self.stateful else b"POST"
            await send_json(send, 405, _error_body(INVALID_REQUEST, "Method not allowed"), [(b"allow", allow)])

    # --- POST ---------------------------------------------------------------------------------------
    async def _post(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        content_type = headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            await _refuse(send, 415, "Unsupported Media Type: Content-Type must be application/json")
            return
        accept = headers.get("accept")
        if accept and not _accepts(accept, "application/json") and not _accepts(accept, "text/event-stream"):
            await _refuse(send, 406, "Not Acceptable: Accept must include application/json and text/event-stream")
            return
        body = await _read_body(scope, receive, headers, self.max_body_bytes)
        if body is None:
            await _refuse(send, 413, f"Payload Too Large: the limit is {self.max_body_bytes} bytes")
            return
        try:
            message = parse(body)
        except McpError as exc:
            await send_json(send, 400, error_message(None, exc))
            return
        version = headers.get("mcp-protocol-version")
        principal = scope.get(SCOPE_KEY)
        if version in versions.MODERN:
            await self._modern(message, headers, version, principal, receive, send)
        elif isinstance(message, Request) and message.method == "initialize":
            await self._initialize(message, principal, send)
        elif version is not None and version not in versions.LEGACY_HEADERS:
            error = unsupported_version(version)
            await send_json(send, 400, error_message(getattr(message, "id", None), error))
        elif isinstance(message, Request) and _is_modern_body(message):
            # A modern body without its header: the spec's header mismatch.
            error = mismatch("the MCP-Protocol-Version header is required")
            await send_json(send, 400, error_message(message.id, error))
        else:
            await self._legacy(message, headers, principal, receive, send)

    # --- 2026-07-28: stateless ----------------------------------------------------------------------
    async def _modern(
        self, message: Any, headers: dict[str, str], version: str, principal: Any, receive: Receive, send: Send
    ) -> None:
        if not isinstance(message, Request):
            if isinstance(message, Notification):
                await send_json(send, 202, None)
            else:
                await _refuse(send, 400, "Bad Request: clients do not send responses in 2026-07-28")
            return
        try:
            meta = message.params.get("_meta")
            meta_version = meta.get(versions.META_PROTOCOL_VERSION) if isinstance(meta, dict) else None
            if isinstance(meta_version, str) and meta_version != version:
                raise mismatch("MCP-Protocol-Version header does not match _meta protocolVersion")
            _, caps, info, level = check_modern_meta(message.params)
            check_standard(headers, message.method, message.params)
            if message.method == "tools/call":
                self._check_param_headers(headers, message.params)
        except McpError as exc:
            await send_json(send, MODERN_STATUS.get(exc.code, 400), error_message(message.id, exc))
            return
        if message.method == "server/discover":
            await send_json(send, 200, result_message(message.id, self.server.discover_result()))
            return
        if message.method == "subscriptions/listen":
            await self._listen(message, receive, send)
            return
        if not self.server.has_method(message.method) or message.method == "ping":
            error = McpError(-32601, f"Method not found: {message.method}")
            await send_json(send, 404, error_message(message.id, error))
            return
        reply = Reply(send, allow_stream=not self.json_response)
        ex = Exchange(
            message.id,
            message.method,
            version,
            True,
            principal=principal,
            client_capabilities=caps,
            client_info=info,
            log_level=level,
            progress_token=progress_token(message.params),
            send=reply.event,
        )
        await self._run(message, ex, reply, receive, None, modern=True, host=headers.get("host"))

    def _check_param_headers(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        name = params.get("name")
        tool = self.server.registry.tools.get(name) if isinstance(name, str) else None
        if tool is not None and tool.header_params:
            check_params(headers, tool.header_params, params.get("arguments") or {})

    async def _listen(self, message: Request, receive: Receive, send: Send) -> None:
        wanted = message.params.get("notifications")
        if not isinstance(wanted, dict):
            await send_json(
                send, 400, error_message(message.id, McpError(INVALID_PARAMS, "notifications filter must be an object"))
            )
            return
        lists = frozenset(
            k
            for k, flag in (
                ("tools", "toolsListChanged"),
                ("prompts", "promptsListChanged"),
                ("resources", "resourcesListChanged"),
            )
            if wanted.get(flag) is True
        )
        uris = wanted.get("resourceSubscriptions")
        resources = {u for u in uris if isinstance(u, str)} if isinstance(uris, list) else set()
        honored: dict[str, Any] = {f"{k}ListChanged": True for k in sorted(lists)}
        if resources:
            honored["resourceSubscriptions"] = sorted(resources)
        sub_meta = {versions.META_SUBSCRIPTION_ID: message.id}
        reply = Reply(send, allow_stream=True)
        await reply.start_stream()
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        listener = Listener(_enqueue(queue), lists, resources, sub_meta)
        await reply.event(
            notification_message(
                "notifications/subscriptions/acknowledged", {"notifications": honored, "_meta": sub_meta}
            )
        )
        self.broadcaster.add(listener)
        try:
            await _pump(queue, reply, receive)
        finally:
            self.broadcaster.discard(listener)

    # --- legacy: initialize and sessions --------------------------------------------------------------
    async def _initialize(self, message: Request, principal: Any, send: Send) -> None:
        params = message.params
        version = versions.negotiate_legacy(params.get("protocolVersion"))
        result = self.server.initialize_result(version)
        extra: list[tuple[bytes, bytes]] = []
        if self.stateful:
            session = Session(version, params.get("capabilities") or {}, params.get("clientInfo"), principal)
            if not self.sessions.add(session):
                await _refuse(send, 503, "Service Unavailable: too many open sessions")
                return
            session.listener = Listener(session.push, resources=session.subscriptions)
            self.broadcaster.add(session.listener)
            extra.append((b"mcp-session-id", session.id.encode()))
        await send_json(send, 200, result_message(message.id, result), extra)

    def _session_for(self, headers: dict[str, str], principal: Any) -> Session | McpError:
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            return McpError(INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required", http_status=400)
        session = self.sessions.get(session_id)
        # A session belongs to whoever opened it; to anyone else it does not exist.
        if session is None or not _same_principal(session.principal, principal):
            return McpError(INVALID_REQUEST, "Session not found", http_status=404)
        session.touch()
        return session

    async def _legacy(
        self, message: Any, headers: dict[str, str], principal: Any, receive: Receive, send: Send
    ) -> None:
        if not self.stateful:
            await self._stateless_legacy(message, headers, principal, receive, send)
            return
        found = self._session_for(headers, principal)
        if isinstance(found, McpError):
            await send_json(send, found.http_status or 400, error_message(getattr(message, "id", None), found))
            return
        session = found
        if isinstance(message, Response):
            session.deliver(message)
            await send_json(send, 202, None)
            return
        if isinstance(message, Notification):
            session_notification(session, message)
            await send_json(send, 202, None)
            return
        new_log = session.streams.new if session.resumable else None
        reply = Reply(send, allow_stream=not self.json_response, new_log=new_log)
        try:
            result = legacy_session_method(session, message)
        except McpError as exc:
            await reply.finish(error_message(message.id, exc))
            return
        if result is not None:
            await reply.finish(result_message(message.id, result))
            return
        progress = progress_token(message.params)
        ex = Exchange(
            message.id,
            message.method,
            session.protocol_version,
            False,
            principal=principal,
            client_capabilities=session.client_capabilities,
            client_info=session.client_info,
            log_level=session.log_level,
            progress_token=progress,
            send=reply.event,
            session_id=session.id,
            close_stream=reply.detach,
        )
        if reply.allow_stream:
            ex.send_request = lambda method, params: session.send_request(reply.event, method, params)
        await self._run(message, ex, reply, receive, session, modern=False, host=headers.get("host"))

    async def _stateless_legacy(
        self, message: Any, headers: dict[str, str], principal: Any, receive: Receive, send: Send
    ) -> None:
        """Legacy clients without sessions (stateful = false): each request stands alone."""
        if not isinstance(message, Request):
            await send_json(send, 202, None)
            return
        reply = Reply(send, allow_stream=not self.json_response)
        if message.method in ("ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"):
            await reply.finish(result_message(message.id, {}))
            return
        version = headers.get("mcp-protocol-version") or versions.LATEST_LEGACY
        progress = progress_token(message.params)
        ex = Exchange(
            message.id,
            message.method,
            version,
            False,
            principal=principal,
            log_level="debug",
            progress_token=progress,
            send=reply.event,
        )
        await self._run(message, ex, reply, receive, None, modern=False, host=headers.get("host"))

    # --- running one request --------------------------------------------------------------------------
    async def _run(
        self,
        message: Request,
        ex: Exchange,
        reply: Reply,
        receive: Receive,
        session: Session | None,
        modern: bool,
        host: str | None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        handle = Cancellable(task)
        watcher = None
        if message.method in USER_CODE_METHODS:
            # Closing the connection cancels the call (the 2026-07-28 cancellation signal, and good manners).
            watcher = asyncio.create_task(_watch_disconnect(receive, handle, reply))
        if session is not None:
            session.in_flight[message.id] = handle  # type: ignore[assignment]
        try:
            result = await self.server.handle(ex, message.params)
            await reply.finish(result_message(message.id, result))
        except InsufficientScope as exc:
            # 403 with the authentication layer's step-up challenge (or, without one, the bare list of scopes).
            challenge = (
                self.challenge(host, exc.needed)
                if self.challenge is not None
                else [(NEEDED_SCOPES, " ".join(exc.needed).encode())]
            )
            await reply.finish(error_message(message.id, exc), 403, challenge)
        except McpError as exc:
            status = MODERN_STATUS.get(exc.code, 200) if modern else 200
            await reply.finish(error_message(message.id, exc), status)
        except asyncio.CancelledError:
            if not handle.requested:
                raise
            task.uncancel()
            # Cancelled on purpose: no response is owed; end the HTTP exchange quietly.
            with contextlib.suppress(Exception):
                await reply.finish(None)
        finally:
            if watcher is not None:
                watcher.cancel()
            if session is not None:
                session.in_flight.pop(message.id, None)

    # --- GET: the legacy session's standalone stream ----------------------------------------------------
    async def _get(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        if headers.get("mcp-protocol-version") in versions.MODERN or not self.stateful:
            await send_json(send, 405, _error_body(INVALID_REQUEST, "Method not allowed"), [(b"allow", b"POST")])
            return
        if not _accepts(headers.get("accept", ""), "text/event-stream"):
            await _refuse(send, 406, "Not Acceptable: GET needs Accept: text/event-stream")
            return
        found = self._session_for(headers, scope.get(SCOPE_KEY))
        if isinstance(found, McpError):
            await send_json(send, found.http_status or 400, error_message(None, found))
            return
        session = found
        last_event_id = headers.get("last-event-id")
        if last_event_id is not None:
            await self._resume(session, last_event_id, receive, send)
            return
        if session.stream_open:
            await _refuse(send, 409, "Conflict: this session already has a GET stream open")
            return
        session.stream_open = True
        reply = Reply(send, allow_stream=True)
        try:
            await reply.start_stream()
            await _pump(session.outbox, reply, receive)
        finally:
            session.stream_open = False

    async def _resume(self, session: Session, last_event_id: str, receive: Receive, send: Send) -> None:
        """Replay a cut stream from after Last-Event-ID, then follow it to its end."""
        found = session.streams.find(last_event_id)
        if found is None:
            await _refuse(send, 404, "Not Found: no stream with that Last-Event-ID in this session")
            return
        log, after = found
        reply = Reply(send, allow_stream=True)
        await reply.start_stream()
        gone = asyncio.create_task(_wait_disconnect(receive))
        try:
            async for event_id, data in log.follow(after):
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": sse_event(data, event_id), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            gone.cancel()

    # --- DELETE: end a legacy session -----------------------------------------------------------------
    async def _delete(self, scope: Scope, send: Send, headers: dict[str, str]) -> None:
        if not self.stateful or headers.get("mcp-protocol-version") in versions.MODERN:
            await send_json(send, 405, _error_body(INVALID_REQUEST, "Method not allowed"), [(b"allow", b"POST")])
            return
        found = self._session_for(headers, scope.get(SCOPE_KEY))
        if isinstance(found, McpError):
            await send_json(send, found.http_status or 400, error_message(None, found))
            return
        self.close_session(found)
        await send_json(send, 204, None)

    def close_session(self, session: Session) -> None:
        self.sessions.remove(session.id)

    def _forget(self, session: Session) -> None:
        if session.listener is not None:
            self.broadcaster.discard(session.listener)


# --- session-scoped legacy methods, shared with stdio ------------------------------------------------
def legacy_session_method(session: Session, message: Request) -> dict[str, Any] | None:
    """Answer the methods that only touch session state; None for everything else."""
    method, params = message.method, message.params
    if method == "ping":
        return {}
    if method == "logging/setLevel":
        from .context import LOG_LEVELS

        level = params.get("level")
        if level not in LOG_LEVELS:
            raise McpError(INVALID_PARAMS, f"unknown log level {level!r}")
        session.log_level = level
        return {}
    if method in ("resources/subscribe", "resources/unsubscribe"):
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise McpError(INVALID_PARAMS, "uri must be a string")
        if method == "resources/subscribe":
            session.subscriptions.add(uri)
        else:
            session.subscriptions.discard(uri)
        return {}
    if method == "initialize":
        raise McpError(INVALID_REQUEST, "the session is already initialized")
    return None


def session_notification(session: Session, message: Notification) -> None:
    if message.method == "notifications/initialized":
        session.initialized = True
    elif message.method == "notifications/cancelled":
        session.cancel(message.params.get("requestId"))


# --- helpers ----------------------------------------------------------------------------------------------
def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key in headers and key.startswith("mcp-"):
            # Two routing headers that may disagree: mark so the mismatch check refuses the request.
            headers[key] = "\x00duplicate"
            continue
        headers[key] = value.decode("latin-1").strip(" \t")  # a field value excludes surrounding whitespace
    return headers


@functools.lru_cache(maxsize=64)
def _accepts(accept: str, media: str) -> bool:
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    major = media.split("/", 1)[0]
    return media in kinds or "*/*" in kinds or f"{major}/*" in kinds


def _is_modern_body(message: Request) -> bool:
    meta = message.params.get("_meta")
    return message.method == "server/discover" or (
        isinstance(meta, dict) and meta.get(versions.META_PROTOCOL_VERSION) in versions.MODERN
    )


def _same_principal(owner: Any, caller: Any) -> bool:
    return bool(getattr(owner, "subject", owner) == getattr(caller, "subject", caller))


def _error_body(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


async def _refuse(send: Send, status: int, message: str) -> None:
    await send_json(send, status, _error_body(INVALID_REQUEST, message))


async def _read_body(scope: Scope, receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    declared = headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return b""
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _watch_disconnect(receive: Receive, handle: Cancellable, reply: Reply) -> None:
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            # A detached call ended its response on purpose and goes on for a client that will resume.
            if not reply.detached:
                handle.cancel()
            return


def _enqueue(queue: asyncio.Queue[dict[str, Any]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def put(message: dict[str, Any]) -> None:
        if queue.full():  # a slow reader loses the oldest notification, not the server's memory
            queue.get_nowait()
        queue.put_nowait(message)

    return put


async def _pump(queue: asyncio.Queue[dict[str, Any]], reply: Reply, receive: Receive) -> None:
    """Copy queued messages to an SSE stream, with keep-alive comments, until the client goes away."""
    gone = asyncio.create_task(_wait_disconnect(receive))
    try:
        while not gone.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, gone}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await reply.event(getter.result())
            else:
                getter.cancel()
                if not done:
                    await reply.keepalive()
    finally:
        gone.cancel()


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
