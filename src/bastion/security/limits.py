"""Bounds on the request head (request line and header fields): 431 Request Header Fields Too Large above them.

Two layers hold the bound. `bastion serve` runs uvicorn with a protocol (security/http_protocol.py) that counts
the head's bytes as they arrive and answers 431 before buffering more than the bound. `HeaderLimit`, the ASGI
middleware here, checks the head again once a server has parsed it, so that `App.asgi()` under another ASGI
server refuses oversize heads too (that server has already buffered them, so its own limit matters as well).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

# 32 KiB holds an 8 KB bearer token (the largest the bearer gate takes), a few 4 KB cookies and the usual
# headers with room to spare; it is what common proxies allow, so anything they pass through fits here too.
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
# Browsers send about 20 fields and proxies add a dozen; many more only serve to make every lookup slow.
MAX_HEADER_FIELDS = 100
STATUS = 431
REASON = b"Request Header Fields Too Large"


def field_size(name: bytes, value: bytes) -> int:
    """The fewest bytes a field line takes on the wire: name, ":", value, CRLF (optional spaces aside), so that
    a sum of these never exceeds what was actually received."""
    return len(name) + len(value) + 3


def head_size(method: str, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, int]:
    """(bytes, field count) of a parsed head: the request line and field lines, and the empty line ending them."""
    fields = headers if isinstance(headers, list) else list(headers)
    # The same sum as field_size over every field, without a Python call per field: this runs on every request.
    size = sum(map(len, chain.from_iterable(fields))) + 3 * len(fields)
    return size + len(method) + len(target) + len(b"  HTTP/1.1\r\n") + 2, len(fields)


def body(max_bytes: int, max_fields: int) -> bytes:
    # The shape the other refusals at the edge (security/origin.py) use.
    message = f"Request Header Fields Too Large: the limit is {max_bytes} bytes and {max_fields} fields"
    return b'{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"' + message.encode() + b'"}}'


class HeaderLimit:
    """ASGI middleware: answer 431 to any HTTP request whose head is larger than `max_bytes` or has more than
    `max_fields` fields, before anything behind it runs."""

    def __init__(self, app: Any, max_bytes: int = DEFAULT_MAX_HEADER_BYTES, max_fields: int = MAX_HEADER_FIELDS):
        self.app = app
        self.max_bytes = max_bytes
        self.max_fields = max_fields

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            target = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
            query = scope.get("query_string") or b""
            if query:
                target += b"?" + query
            size, count = head_size(scope.get("method", "GET"), target, scope["headers"])
            if size > self.max_bytes or count > self.max_fields:
                content = body(self.max_bytes, self.max_fields)
                await send(
                    {
                        "type": "http.response.start",
                        "status": STATUS,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(content)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": content})
                return
        await self.app(scope, receive, send)
