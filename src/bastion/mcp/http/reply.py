"""The answer to one POST: a single JSON body, or an SSE stream once anything is sent before the result.

Most calls finish without a word to the client and get plain JSON, which is cheapest. The first
notification or request sent mid-call switches the response to an SSE stream. In resumable sessions the
stream opens with a priming event (an id and a retry hint), every event is logged, and the stream can be
ended early (`detach`) with the rest delivered to a client that reconnects with Last-Event-ID.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from ..resume import StreamLog

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]
RETRY_MS = 500


def sse_event(data: bytes, event_id: str | None = None) -> bytes:
    head = b"event: message\n" if event_id is None else f"id: {event_id}\nevent: message\n".encode()
    return head + b"data: " + data + b"\n\n"


async def send_json(send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(body) if body is not None else b""
    all_headers = (JSON_HEADERS if body is not None else []) + (headers or [])
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": payload})


class Reply:
    """One POST's response, started lazily as JSON or SSE."""

    __slots__ = ("_lock", "_send", "allow_stream", "detached", "log", "new_log", "started")

    def __init__(
        self,
        send: Send,
        allow_stream: bool,
        new_log: Callable[[], StreamLog] | None = None,
    ) -> None:
        self._send = send
        self.allow_stream = allow_stream
        self.new_log = new_log  # resumable sessions log their streams
        self.log: StreamLog | None = None
        self.started = False
        self.detached = False
        self._lock: asyncio.Lock | None = None

    async def start_stream(self) -> None:
        if self.started:
            return
        self.started = True
        self._lock = asyncio.Lock()
        await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        if self.new_log is not None:
            # A first event with an id and no data lets the client resume even if nothing else got through.
            self.log = self.new_log()
            priming = f"id: {self.log.record(b'')}\nretry: {RETRY_MS}\ndata: \n\n".encode()
            await self._send({"type": "http.response.body", "body": priming, "more_body": True})

    async def _write(self, data: bytes, last: bool) -> None:
        assert self._lock is not None
        async with self._lock:
            event_id = self.log.record(data) if self.log is not None else None
            if last and self.log is not None:
                self.log.finish()
            if not self.detached:
                await self._send(
                    {"type": "http.response.body", "body": sse_event(data, event_id), "more_body": not last}
                )

    async def event(self, message: dict[str, Any]) -> None:
        """Send a notification or request on the stream; dropped when streams are off (JSON-only)."""
        if not self.allow_stream:
            return
        if not self.started:
            await self.start_stream()
        await self._write(orjson.dumps(message), last=False)

    async def detach(self) -> bool:
        """End the HTTP response now; later events go only to the log, for a client that resumes."""
        if not self.allow_stream or self.new_log is None or self.detached:
            return False
        await self.start_stream()
        if self.log is not None:
            await self.log.kept()  # a client resuming at once, on another instance, must find the stream
        assert self._lock is not None
        async with self._lock:
            self.detached = True
            await self._send({"type": "http.response.body", "body": b""})
        return True

    async def keepalive(self) -> None:
        """An SSE comment, so idle proxies and clients keep a quiet stream open."""
        assert self._lock is not None
        async with self._lock:
            await self._send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})

    async def finish(
        self, message: dict[str, Any] | None, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        if not self.started:
            if message is None:
                await send_json(self._send, 202, None)
            else:
                await send_json(self._send, status, message, headers)
            return
        if message is None:
            assert self._lock is not None
            async with self._lock:
                if self.log is not None:
                    self.log.finish()
                if not self.detached:
                    await self._send({"type": "http.response.body", "body": b""})
            return
        await self._write(orjson.dumps(message), last=True)
