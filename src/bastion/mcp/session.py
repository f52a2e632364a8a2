"""A legacy (2025-06-18, 2025-11-25) session: what `initialize` agreed, and the requests in flight.

Over stdio the session is the process; over Streamable HTTP it is named by an Mcp-Session-Id carrying 256
random bits and, once authentication exists, belongs to the principal that opened it.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable
from typing import Any

from .context import ToolError
from .exchange import Send
from .jsonrpc import RequestId, Response, is_request_id, request_message
from .notify import Listener
from .resume import StreamLogs

CLIENT_ANSWER_TIMEOUT = 600.0
OUTBOX_LIMIT = 1000


class Session:
    def __init__(
        self,
        protocol_version: str,
        client_capabilities: dict[str, Any],
        client_info: Any,
        principal: Any = None,
        session_id: str | None = None,
    ) -> None:
        self.id = session_id or secrets.token_urlsafe(32)
        self.protocol_version = protocol_version
        self.client_capabilities = client_capabilities if isinstance(client_capabilities, dict) else {}
        self.client_info = client_info if isinstance(client_info, dict) else None
        self.principal = principal
        self.initialized = False
        # Without logging/setLevel every level is sent, as the reference servers do.
        self.log_level: str | None = "debug"
        self.subscriptions: set[str] = set()
        self.in_flight: dict[RequestId, asyncio.Task[Any]] = {}
        self._pending: dict[RequestId, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self.last_seen = time.monotonic()
        # Notifications not tied to a request wait here for the session's GET stream (or stdout).
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=OUTBOX_LIMIT)
        self.stream_open = False
        self.listener: Listener | None = None
        self.streams = StreamLogs()

    @property
    def resumable(self) -> bool:
        """2025-11-25 added priming events and Last-Event-ID resumption for every stream."""
        return self.protocol_version >= "2025-11-25"

    async def push(self, message: dict[str, Any]) -> None:
        if self.outbox.full():  # a client that never reads loses the oldest, not the server's memory
            self.outbox.get_nowait()
        self.outbox.put_nowait(message)

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    async def send_request(self, send: Send, method: str, params: dict[str, Any]) -> Any:
        """Send a request to the client on `send` and wait for the answer it POSTs (or writes) back."""
        request_id = f"bastion-{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await send(request_message(request_id, method, params))
            async with asyncio.timeout(CLIENT_ANSWER_TIMEOUT):
                return await future
        except TimeoutError:
            raise ToolError(f"the client did not answer {method} in time") from None
        finally:
            self._pending.pop(request_id, None)

    def deliver(self, response: Response) -> bool:
        """Hand a client's response to the request waiting for it; False if nothing was waiting."""
        future = self._pending.get(response.id)
        if future is None or future.done():
            return False
        if response.error is not None:
            message = str(response.error.get("message", "error"))[:500]
            future.set_exception(ToolError(f"the client answered with an error: {message}"))
        else:
            future.set_result(response.result)
        return True

    def cancel(self, request_id: Any) -> None:
        if not is_request_id(request_id):
            return
        task = self.in_flight.get(request_id)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        for task in self.in_flight.values():
            task.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ToolError("the session was closed"))


class SessionTable:
    """Open HTTP sessions, capped in number; idle ones are closed when the table is next touched."""

    def __init__(
        self, limit: int = 10_000, idle_seconds: float = 3600.0, on_remove: Callable[[Session], None] | None = None
    ) -> None:
        self.limit = limit
        self.on_remove = on_remove
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and time.monotonic() - session.last_seen > self.idle_seconds:
            self.remove(session_id)
            return None
        return session

    def add(self, session: Session) -> bool:
        self.sweep()
        if len(self._sessions) >= self.limit:
            return False
        self._sessions[session.id] = session
        return True

    def remove(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close()
            if self.on_remove is not None:
                self.on_remove(session)

    def sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 30
        for session_id in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]:
            self.remove(session_id)

    def close_all(self) -> None:
        for session_id in list(self._sessions):
            self.remove(session_id)
