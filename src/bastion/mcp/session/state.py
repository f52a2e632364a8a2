"""A legacy (2025-06-18, 2025-11-25) session: what `initialize` agreed, and the requests in flight.

Over stdio the session is the process; over Streamable HTTP it is named by an Mcp-Session-Id carrying 256
random bits and, once authentication exists, belongs to the principal that opened it.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from typing import Any

from ..context import ToolError
from ..exchange import Send
from ..jsonrpc import RequestId, Response, is_request_id, request_message
from ..notify import Listener
from ..resume import StreamLogs
from .cancel import Cancellable

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
        self.in_flight: dict[RequestId, Cancellable] = {}
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
        handle = self.in_flight.get(request_id)
        if handle is not None:
            handle.cancel()

    def close(self) -> None:
        for handle in self.in_flight.values():
            handle.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ToolError("the session was closed"))
