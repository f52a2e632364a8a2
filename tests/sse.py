"""An HTTP request to an ASGI app held open, its server-sent events collected as they come."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from tests.clients import BASE
from tests.waiting import eventually


class Stream:
    """One HTTP request to an ASGI app held open, its server-sent events collected as they come (the in-process
    httpx transport would wait for a stream's end)."""

    def __init__(self, asgi: Any, method: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.messages: list[dict[str, Any]] = []
        self.ids: list[str | None] = []  # each message's event id (resumable streams)
        self.ended = asyncio.Event()
        self.status: int | None = None
        self._buffer = b""
        self._body = body
        self._closed = asyncio.Event()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": "/mcp",
            "raw_path": b"/mcp",
            "query_string": b"",
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in {"host": BASE.split("//")[1], **headers}.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self._task = asyncio.create_task(asgi(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._closed.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self._buffer += message.get("body", b"")
            while b"\n\n" in self._buffer:
                event, self._buffer = self._buffer.split(b"\n\n", 1)
                lines = event.split(b"\n")
                data = b"".join(line[5:].strip() for line in lines if line.startswith(b"data:"))
                event_id = next((line[3:].strip().decode() for line in lines if line.startswith(b"id:")), None)
                if data:
                    self.messages.append(orjson.loads(data))
                    self.ids.append(event_id)
                elif event_id is not None:
                    self.primed = event_id
            if not message.get("more_body", False):
                self.ended.set()

    primed: str | None = None  # the priming event's id (resumable streams)

    def methods(self) -> list[str]:
        return [message.get("method", "") for message in self.messages]

    async def has(self, method: str, count: int = 1) -> None:
        async def there() -> bool:
            return self.methods().count(method) >= count

        await eventually(there, f"{method} on the stream")

    async def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self._task, 10)
