"""The 2025-06-18 and 2025-11-25 era: `initialize` opens a session named by Mcp-Session-Id, later requests
run inside it, GET opens its standalone stream (or resumes a cut one), DELETE ends it. With `stateful` off,
each legacy request stands alone instead.

On many instances (the table given SharedSessions) any instance serves any request of a session: a client's
answer to a question asked elsewhere is routed there, a cancellation reaches the instance running the request, a
cut stream resumes from the events another instance kept, and a session's GET stream listens for notifications
only while it is open (one instance cannot know when another's stream opens). When shared state cannot be read,
the request is refused with 503 and Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from .. import versions
from ..errors import INVALID_REQUEST, McpError, Refusal, Refused, http_status
from ..exchange import Exchange, progress_token
from ..jsonrpc import Notification, Request, Response, error_message, result_message
from ..notify import Broadcaster, Listener
from ..server import Server
from ..session import (
    STATE_METHODS,
    SUBSCRIPTION_METHODS,
    Session,
    SessionsUnavailable,
    SessionTable,
    legacy_session_method,
    session_notification,
)
from .reply import Reply, send_json, sse_event
from .run import Runner
from .streams import pump, wait_disconnect
from .wire import Receive, Send, accepts, reject

# Requests stateless legacy answers at once: without a session there is no state for them to change.
STATELESS_NO_OPS = frozenset({"ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
UNAVAILABLE = Refused(Refusal.SESSIONS_UNAVAILABLE, "Service Unavailable: session state cannot be read now")
RETRY_AFTER = [(b"retry-after", b"5")]


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
            shared = self.sessions.shared
            session = Session(
                version, params.get("capabilities") or {}, params.get("clientInfo"), principal, None, shared
            )
            try:
                opened = await self.sessions.open(session)
            except SessionsUnavailable:
                await reject(send, UNAVAILABLE, message.id, RETRY_AFTER)
                return
            if not opened:
                await reject(send, Refused(Refusal.TOO_MANY_SESSIONS, "Service Unavailable: too many open sessions"))
                return
            if shared is None:  # one instance: notifications wait for the GET stream from the start
                self._listen(session)
            extra.append((b"mcp-session-id", session.id.encode()))
        await send_json(send, 200, result_message(message.id, result), extra)

    async def post(
        self, message: Any, headers: dict[str, str], principal: Any, receive: Receive, send: Send, root: str = ""
    ) -> None:
        if not self.stateful:
            await self._stateless(message, headers, principal, receive, send, root)
            return
        msg_id = getattr(message, "id", None)
        try:
            found = await self._session_for(headers, principal)
            if isinstance(found, McpError):
                await reject(send, found, msg_id)
                return
            session = found
            if isinstance(message, Response):
                if not session.deliver(message) and self.sessions.shared is not None:
                    await self.sessions.shared.answer(session.id, message)
                await send_json(send, 202, None)
                return
            if isinstance(message, Notification):
                if message.method == "notifications/cancelled":
                    await self.sessions.cancel(session, message.params.get("requestId"))
                else:
                    session_notification(session, message)
                await send_json(send, 202, None)
                return
            new_log = session.streams.new if session.resumable else None
            reply = Reply(send, allow_stream=not self.json_response, new_log=new_log)
            try:
                if message.method in STATE_METHODS:
                    result = await self.sessions.change(session, lambda s: legacy_session_method(s, message))
                    if message.method in SUBSCRIPTION_METHODS:
                        self.broadcaster.interest_changed()
                else:
                    result = legacy_session_method(session, message)
            except McpError as exc:
                await reply.finish(error_message(message.id, exc), http_status(exc, in_session=True))
                return
        except SessionsUnavailable:
            await reject(send, UNAVAILABLE, msg_id, RETRY_AFTER)
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
            host=headers.get("host"),
            root=root,
        )
        if reply.allow_stream:
            ex.send_request = lambda method, params: session.send_request(reply.event, method, params)
        await self.runner.run(message, ex, reply, receive, session, host=headers.get("host"), root=root)

    async def _stateless(
        self, message: Any, headers: dict[str, str], principal: Any, receive: Receive, send: Send, root: str
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
            host=headers.get("host"),
            root=root,
        )
        await self.runner.run(message, ex, reply, receive, None, host=headers.get("host"), root=root)

    # --- GET: the session's standalone stream -------------------------------------------------------------
    async def get(self, headers: dict[str, str], principal: Any, receive: Receive, send: Send) -> None:
        if not accepts(headers.get("accept", ""), "text/event-stream"):
            await reject(send, Refused(Refusal.NOT_ACCEPTABLE, "Not Acceptable: GET needs Accept: text/event-stream"))
            return
        try:
            found = await self._session_for(headers, principal)
        except SessionsUnavailable:
            await reject(send, UNAVAILABLE, None, RETRY_AFTER)
            return
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
        shared = self.sessions.shared is not None
        if shared:
            self._listen(session)
        reply = Reply(send, allow_stream=True)
        try:
            await reply.start_stream()
            await pump(session.outbox, reply, receive)
        finally:
            session.stream_open = False
            if shared:  # what is raised while no stream is open is not kept (another may open elsewhere)
                self.sessions.stop_listening(session)
                _drain(session.outbox)

    def _listen(self, session: Session) -> None:
        if session.listener is None:
            session.listener = Listener(session.push, resources=session.subscriptions)
            self.broadcaster.add(session.listener)

    async def _resume(self, session: Session, last_event_id: str, receive: Receive, send: Send) -> None:
        """Replay a cut stream from after Last-Event-ID, then follow it to its end."""
        events: AsyncIterator[tuple[str, bytes]] | None = None
        found = session.streams.find(last_event_id)
        if found is not None:
            log, after = found
            events = log.follow(after)
        elif self.sessions.shared is not None:  # a stream of another instance
            try:
                events = await self.sessions.shared.follow(session.id, last_event_id)
            except SessionsUnavailable:
                await reject(send, UNAVAILABLE, None, RETRY_AFTER)
                return
        if events is None:
            error = Refused(Refusal.STREAM_NOT_FOUND, "Not Found: no stream with that Last-Event-ID in this session")
            await reject(send, error)
            return
        reply = Reply(send, allow_stream=True)
        await reply.start_stream()
        gone = asyncio.create_task(wait_disconnect(receive))
        try:
            async for event_id, data in events:
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": sse_event(data, event_id), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            gone.cancel()

    # --- DELETE: end the session --------------------------------------------------------------------------
    async def delete(self, headers: dict[str, str], principal: Any, send: Send) -> None:
        try:
            found = await self._session_for(headers, principal)
            if isinstance(found, McpError):
                await reject(send, found)
                return
            await self.sessions.end(found)
        except SessionsUnavailable:
            await reject(send, UNAVAILABLE, None, RETRY_AFTER)
            return
        await send_json(send, 204, None)

    # --- sessions ---------------------------------------------------------------------------------------
    async def _session_for(self, headers: dict[str, str], principal: Any) -> Session | McpError:
        """The caller's session; SessionsUnavailable when shared state cannot be read."""
        session_id = headers.get("mcp-session-id")
        if session_id is None:
            return McpError(INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
        try:
            session = await self.sessions.find(session_id)
        except Refused as refused:
            return refused
        # A session belongs to whoever opened it; to anyone else it does not exist.
        if session is None or not _same_principal(session.principal, principal):
            return Refused(Refusal.SESSION_NOT_FOUND, "Session not found")
        session.touch()
        return session

    def close_session(self, session: Session) -> None:
        self.sessions.remove(session.id)


def _drain(queue: asyncio.Queue[dict[str, Any]]) -> None:
    while not queue.empty():
        queue.get_nowait()


def _same_principal(owner: Any, caller: Any) -> bool:
    return bool(getattr(owner, "subject", owner) == getattr(caller, "subject", caller))
