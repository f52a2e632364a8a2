"""The answer to one POST: a single JSON body, or an SSE stream once anything is sent before the result.

Most calls finish without a word to the client and get plain JSON, which is cheapest. The first
notification or request sent mid-call switches the response to an SSE stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


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

    __slots__ = ("_lock", "_send", "allow_stream", "event_ids", "headers", "started")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]], allow_stream: bool,
                 event_ids: Callable[[bytes], str | None] | None = None) -> None:
        self._send = send
        self.headers = headers
        self.allow_stream = allow_stream
        self.event_ids = event_ids  # records events for resumption and names them, when resumable
        self.started = False
        self._lock: asyncio.Lock | None = None

    async def start_stream(self, priming: bool = False) -> None:
        if self.started:
            return
        self.started = True
        self._lock = asyncio.Lock()
        await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self.headers})
        if priming and self.event_ids is not None:
            # An event with an id and no data lets the client resume even before anything else is sent.
            event_id = self.event_ids(b"")
            await self._send({"type": "http.response.body", "body": f"id: {event_id}\ndata: \n\n".encode(),
                              "more_body": True})

    async def event(self, message: dict[str, Any]) -> None:
        """Send a notification or request on the stream; dropped when streams are off (JSON-only)."""
        if not self.allow_stream:
            return
        if not self.started:
            await self.start_stream()
        data = orjson.dumps(message)
        assert self._lock is not None
        async with self._lock:
            event_id = self.event_ids(data) if self.event_ids else None
            await self._send({"type": "http.response.body", "body": sse_event(data, event_id), "more_body": True})

    async def keepalive(self) -> None:
        """An SSE comment, so idle proxies and clients keep a quiet stream open."""
        assert self._lock is not None
        async with self._lock:
            await self._send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})

    async def finish(self, message: dict[str, Any] | None, status: int = 200) -> None:
        if not self.started:
            if message is None:
                await send_json(self._send, 202, None, self.headers)
            else:
                await send_json(self._send, status, message, self.headers)
            return
        assert self._lock is not None
        async with self._lock:
            body = b""
            if message is not None:
                data = orjson.dumps(message)
                event_id = self.event_ids(data) if self.event_ids else None
                body = sse_event(data, event_id)
            await self._send({"type": "http.response.body", "body": body})
