"""A legacy (2025-06-18, 2025-11-25) session: what `initialize` agreed, and the requests in flight.

Over stdio the session is the process; over Streamable HTTP it is named by an Mcp-Session-Id carrying 256
random bits and, once authentication exists, belongs to the principal that opened it. On many instances each one
holds its own copy of a session (built from the shared record, see shared.py) with the requests in flight there.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from typing import TYPE_CHECKING, Any

from ..context import ToolError
from ..exchange import Send
from ..jsonrpc import RequestId, Response, is_request_id, request_message
from ..notify import Listener
from ..resume import StreamLogs
from .cancel import Cancellable
from .shared import Record, SessionsUnavailable

if TYPE_CHECKING:
    from .shared import SharedSessions

CLIENT_ANSWER_TIMEOUT = 600.0
# On many instances an answer may land elsewhere: besides being told, the asker looks for it this often.
ANSWER_POLL_SECONDS = 2.0
OUTBOX_LIMIT = 1000


class Session:
    def __init__(
        self,
        protocol_version: str,
        client_capabilities: dict[str, Any],
        client_info: Any,
        principal: Any = None,
        session_id: str | None = None,
        shared: SharedSessions | None = None,
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
        self.shared = shared
        sink = (lambda stream_id: shared.stream_sink(self.id, stream_id)) if shared is not None else None
        self.streams = StreamLogs(sink)
        # A copy of a shared record: its revision, when it was written, and under which epoch it was read.
        self.record_meta: Record = {}
        self.epoch: object | None = None
        self.stale = False

    # --- the shared record ------------------------------------------------------------------------------
    def record(self) -> Record:
        """What other instances need to serve this session (see shared.py)."""
        return {
            "v": self.protocol_version,
            "c": self.client_capabilities,
            "i": self.client_info,
            "p": getattr(self.principal, "subject", self.principal),
            "l": self.log_level,
            "s": sorted(self.subscriptions),
        }

    @classmethod
    def from_record(cls, session_id: str, record: Record, shared: SharedSessions | None = None) -> Session:
        session = cls(record.get("v", ""), record.get("c") or {}, record.get("i"), record.get("p"), session_id, shared)
        session.apply(record)
        return session

    def apply(self, record: Record) -> None:
        """Take what the client may change (log level, subscriptions) from a newer record. Subscriptions change in
        place: a listener holds the same set."""
        self.log_level = record.get("l")
        wanted = {uri for uri in record.get("s") or () if isinstance(uri, str)}
        self.subscriptions.intersection_update(wanted)
        self.subscriptions.update(wanted)
        self.record_meta = {k: v for k, v in record.items() if k not in ("v", "c", "i", "p", "l", "s")}

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
        request_id = self.shared.request_id(self.id) if self.shared is not None else f"bastion-{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await send(request_message(request_id, method, params))
            async with asyncio.timeout(CLIENT_ANSWER_TIMEOUT):
                return await self._answer(request_id, future)
        except TimeoutError:
            raise ToolError(f"the client did not answer {method} in time") from None
        finally:
            self._pending.pop(request_id, None)

    async def _answer(self, request_id: str, future: asyncio.Future[Any]) -> Any:
        if self.shared is None:
            return await future
        # Another instance tells this one when the answer lands there; looking now and then covers a lost word.
        while True:
            done, _ = await asyncio.wait({future}, timeout=ANSWER_POLL_SECONDS)
            if done:
                return future.result()
            await self.fetch_answer(request_id)

    def waits_for(self, request_id: str) -> bool:
        future = self._pending.get(request_id)
        return future is not None and not future.done()

    async def fetch_answer(self, request_id: str) -> None:
        """Take the answer to `request_id` from the shared store, if it landed on another instance."""
        if self.shared is None or not self.waits_for(request_id):
            return
        try:
            response = await self.shared.take_answer(self.id, request_id)
        except SessionsUnavailable:  # keep waiting: the next look may find it
            return
        if response is not None:
            self.deliver(response)

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
