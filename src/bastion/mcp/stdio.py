"""stdio: newline-delimited JSON-RPC on stdin/stdout, for local clients that start the server themselves.

The process is one client. A legacy client opens with `initialize`; a 2026-07-28 client sends every request
with its `_meta` (and may probe with `server/discover`). Logs go to stderr: stdout carries only MCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any, BinaryIO

from . import versions
from .errors import INVALID_REQUEST, McpError
from .exchange import Exchange, progress_token
from .jsonrpc import Notification, Request, Response, dumps, error_message, is_request_id, parse, result_message
from .notify import Broadcaster, Listener
from .server import Server, check_modern_meta
from .session import SUBSCRIPTION_METHODS, Cancellable, Session, legacy_session_method, session_notification

log = logging.getLogger("bastion.mcp")


class StdioConnection:
    def __init__(self, server: Server, broadcaster: Broadcaster, output: BinaryIO, max_line: int) -> None:
        self.server = server
        self.broadcaster = broadcaster
        self.output = output
        self.max_line = max_line
        self.session: Session | None = None
        self.in_flight: dict[Any, Cancellable] = {}
        self.tasks: set[asyncio.Task[Any]] = set()

    async def write(self, message: dict[str, Any]) -> None:
        # One write per message with no await between: lines never interleave.
        self.output.write(dumps(message) + b"\n")
        self.output.flush()

    async def serve(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than max_line: refuse it and skip to the next newline
                    await self.write(error_message(None, McpError(INVALID_REQUEST, "message too large")))
                    await _skip_line(reader)
                    continue
                if not line:
                    break
                if line.strip():
                    await self.receive(line)
            # End of input: calls in flight still get their answers (tool timeouts bound the wait).
            if self.tasks:
                await asyncio.wait(set(self.tasks))
        finally:
            for handle in list(self.in_flight.values()):
                handle.cancel()
            if self.session is not None and self.session.listener is not None:
                self.broadcaster.discard(self.session.listener)

    async def receive(self, line: bytes) -> None:
        try:
            message = parse(line)
        except McpError as exc:
            await self.write(error_message(None, exc))
            return
        if isinstance(message, Response):
            if self.session is not None:
                self.session.deliver(message)
        elif isinstance(message, Notification):
            if message.method == "notifications/cancelled":
                request_id = message.params.get("requestId")
                handle = self.in_flight.get(request_id) if is_request_id(request_id) else None
                if handle is not None:
                    handle.cancel()
            elif self.session is not None:
                session_notification(self.session, message)
        else:
            task = asyncio.create_task(self.answer(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def answer(self, request: Request) -> None:
        task = asyncio.current_task()
        assert task is not None
        handle = Cancellable(task)
        self.in_flight[request.id] = handle
        try:
            result = await self._result(request)
            await self.write(result_message(request.id, result))
        except McpError as exc:
            await self.write(error_message(request.id, exc))
        except asyncio.CancelledError:
            if not handle.requested:
                raise
            task.uncancel()  # cancelled by the client: no response is owed
        finally:
            self.in_flight.pop(request.id, None)

    async def _result(self, request: Request) -> dict[str, Any]:
        meta = request.params.get("_meta")
        modern = request.method == "server/discover" or (
            isinstance(meta, dict) and versions.META_PROTOCOL_VERSION in meta
        )
        if modern:
            version, caps, info, level = check_modern_meta(request.params)
            if request.method == "server/discover":
                return self.server.discover_result()
            progress = progress_token(request.params)
            ex = Exchange(
                request.id,
                request.method,
                version,
                True,
                client_capabilities=caps,
                client_info=info,
                log_level=level,
                progress_token=progress,
                send=self.write,
            )
            return await self.server.handle(ex, request.params)
        if request.method == "initialize":
            return self._initialize(request)
        session = self.session
        if session is None:
            raise McpError(INVALID_REQUEST, "the connection is not initialized: send initialize first")
        answered = legacy_session_method(session, request)
        if answered is not None:
            if request.method in SUBSCRIPTION_METHODS:
                self.broadcaster.interest_changed()
            return answered
        progress = progress_token(request.params)
        ex = Exchange(
            request.id,
            request.method,
            session.protocol_version,
            False,
            client_capabilities=session.client_capabilities,
            client_info=session.client_info,
            log_level=session.log_level,
            progress_token=progress,
            send=self.write,
            send_request=lambda method, params: session.send_request(self.write, method, params),
        )
        return await self.server.handle(ex, request.params)

    def _initialize(self, request: Request) -> dict[str, Any]:
        if self.session is not None:
            raise McpError(INVALID_REQUEST, "the connection is already initialized")
        params = request.params
        version = versions.negotiate_legacy(params.get("protocolVersion"))
        session = Session(version, params.get("capabilities") or {}, params.get("clientInfo"))
        session.listener = Listener(self.write, resources=session.subscriptions)
        self.broadcaster.add(session.listener)
        self.session = session
        return self.server.initialize_result(version)


async def _skip_line(reader: asyncio.StreamReader) -> None:
    while True:
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as exc:
            await reader.readexactly(exc.consumed)
        except asyncio.IncompleteReadError:
            return


async def serve_stdio(server: Server, broadcaster: Broadcaster, max_line: int = 1_048_576) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=max_line, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), sys.stdin)
    connection = StdioConnection(server, broadcaster, sys.stdout.buffer, max_line)
    with contextlib.suppress(asyncio.CancelledError):
        await connection.serve(reader)
