"""The 2025-06-18 and 2025-11-25 era: `initialize` opens a session named by Mcp-Session-Id, later requests
run inside it, GET opens its standalone stream (or resumes a cut one), DELETE ends it. With `stateful` off,
each legacy request stands alone instead."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import versions
from ..errors import INVALID_REQUEST, McpError, Refusal, Refused, http_status
from ..exchange import Exchange, progress_token
from ..jsonrpc import Notification, Request, Response, error_message, result_message
from ..notify import Broadcaster, Listener
from ..server import Server
from ..session import Session, SessionTable, legacy_session_method, session_notification
from .reply import Reply, send_json, sse_event
from .run import Runner
from .streams import pump, wait_disconnect
from .wire import Receive, Send, accepts, reject

# Requests stateless legacy answers at once: without a session there is no state for them to change.
STATELESS_NO_OPS = frozenset({"ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})


class LegacyHandler:
    def __init__(
        self,
        server: Server,
        broadcaster: Broadcaster,
        sessions: SessionTable,
        runner: Runner,
        *,
        stateful: bool,
        json_response: bool,
    ) -> None:
        self.server = server
        self.broadcaster = broadcaster
        self.sessions = sessions
        self.runner = runner
        self.stateful = stateful
        self.json_response = json_response

    # --- POST -------------------------------------------------------------------------------------------
    async def initialize(self, message: Request, principal: Any, send: Send) -> None:
        params = message.params
        version = versions.negotiate_legacy(params.get("protocolVersion"))
        result = self.server.initialize_result(version)
        extra: list[tuple[bytes, bytes]] = []
        if self.stateful:
            session = Session(version, params.get("capabilities") or {}, params.get("clientInfo"), principal)
            if not self.sessions.add(session):
                await reject(send, Refused(Refusal.TOO_MANY_SESSIONS, "Service Unavailable: too many open sessions"))
                return
            session.listener = Listener(session.push, resources=session.subscriptions)
            self.broadcaster.add(session.listener)
            extra.append((b"mcp-session-id", session.id.encode()))
        await send_json(send, 200, result_message(message.id, result), extra)

    async def post(self, message: Any, headers: dict[str, str], principal: Any, receive: Receive, send: Send) -> None:
        if not self.stateful:
            await self._stateless(message, headers, principal, receive, send)
            return
        found = self._session_for(headers, principal)
        if isinstance(found, McpError):
            await reject(send, found, getattr(message, "id", None))
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
            await reply.finish(error_message(message.id, exc), http_status(exc, in_session=True))
            return
        if result is not None:
            await reply.finish(result_message(message.id, result))
            return
        ex = Exchange(
            message.id,
            message.method,
            session.protocol_version,
            False,
            principal=principal,
            client_capabilities=session.client_capabilities,
            client_info=session.client_info,
            log_level=session.log_level,
            progress_token=progress_token(message.params),
            send=reply.event,
            session_id=session.id,
            close_stream=reply.detach,
        )
        if reply.allow_stream:
            ex.send_request = lambda method, params: session.send_request(reply.event, method, params)
        await self.runner.run(message, ex, reply, receive, session, host=headers.get("host"))

    async def _stateless(
        self, message: Any, headers: dict[str, str], principal: Any, receive: Receive, send: Send
    ) -> None:
        """Legacy clients without sessions (stateful = false): each request stands alone."""
        if not isinstance(message, Request):
            await send_json(send, 202, None)
            return
        reply = Reply(send, allow_stream=not self.json_response)
        if message.method in STATELESS_NO_OPS:
            await reply.finish(result_message(message.id, {}))
            return
        version = headers.get("mcp-protocol-version") or versions.LATEST_LEGACY
        ex = Exchange(
            message.id,
            message.method,
            version,
            False,
            principal=principal,
            log_level="debug",
            progress_token=progress_token(message.params),
            send=reply.event,
        )
        await self.runner.run(message, ex, reply, receive, None, host=headers.get("host"))

    # --- GET: the session's standalone stream -------------------------------------------------------------
    async def get(self, headers: dict[str, str], principal: Any, receive: Receive, send: Send) -> None:
        if not accepts(headers.get("accept", ""), "text/event-stream"):
            await reject(send, Refused(Refusal.NOT_ACCEPTABLE, "Not Acceptable: GET needs Accept: text/event-stream"))
            return
        found = self._session_for(headers, principal)
        if isinstance(found, McpError):
            await reject(send, found)
            return
        session = found
        last_event_id = headers.get("last-event-id")
        if last_event_id is not None:
            await self._resume(session, last_event_id, receive, send)
            return
        if session.stream_open:
            await reject(send, Refused(Refusal.STREAM_CONFLICT, "Conflict: this session already has a GET stream open"))
            return
        session.stream_open = True
        reply = Reply(send, allow_stream=True)
        try:
            await reply.start_stream()
            await pump(session.outbox, reply, receive)
        finally:
            session.stream_open = False

    async def _resume(self, session: Session, last_event_id: str, receive: Receive, send: Send) -> None:
        """Replay a cut stream from after Last-Event-ID, then follow it to its end."""
        found = session.streams.find(last_event_id)
        if found is None:
            error = Refused(Refusal.STREAM_NOT_FOUND, "Not Found: no stream with that Last-Event-ID in this session")
            await reject(send, error)
            return
        log, after = found
        reply = Reply(send, allow_stream=True)
        await reply.start_stream()
        gone = asyncio.create_task(wait_disconnect(receive))
        try:
            async for event_id, data in log.follow(after):
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": sse_event(data, event_id), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            gone.cancel()

    # --- DELETE: end the session --------------------------------------------------------------------------
    async def delete(self, headers: dict[str, str], principal: Any, send: Send) -> None:
        found = self._session_for(headers, principal)
        if isinstance(found, McpError):
            await reject(send, found)
            return
        self.close_session(found)
        await send_json(send, 204, None)

    # --- sessions ---------------------------------------------------------------------------------------
    def _session_for(self, headers: dict[str, str], principal: Any) -> Session | McpError:
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            return McpError(INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
        session = self.sessions.get(session_id)
        # A session belongs to whoever opened it; to anyone else it does not exist.
        if session is None or not _same_principal(session.principal, principal):
            return Refused(Refusal.SESSION_NOT_FOUND, "Session not found")
        session.touch()
        return session

    def close_session(self, session: Session) -> None:
        self.sessions.remove(session.id)


def _same_principal(owner: Any, caller: Any) -> bool:
    return bool(getattr(owner, "subject", owner) == getattr(caller, "subject", caller))
