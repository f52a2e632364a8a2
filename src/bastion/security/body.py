"""Reading a request body without ever holding more than a limit: 413 Content Too Large above it.

A declared Content-Length over the limit is refused before a byte is read; a body without one (chunked), or
with one that lies, is counted while it streams and refused as soon as it passes the limit, leaving the rest
unread. Works on any source of chunks: a Starlette request (`request_body`) or a raw ASGI receive channel
(`receive_chunks`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import ClientDisconnect, Request


class BodyError(Exception):
    """A body that cannot be used; `status` is the HTTP status to answer with."""

    status = 400


class BodyTooLarge(BodyError):
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class BadContentLength(BodyError):
    def __init__(self) -> None:
        super().__init__("the Content-Length header is not one number")


class BodyIncomplete(BodyError):
    def __init__(self) -> None:
        super().__init__("the client went away before the body ended")


def declared_length(values: Sequence[str]) -> int | None:
    """The Content-Length, None when absent; several or non-digit values are refused (a smuggling vector)."""
    if not values:
        return None
    if len(values) > 1 or not values[0].isascii() or not values[0].isdigit():
        raise BadContentLength
    return int(values[0])


async def read_bounded(chunks: AsyncIterable[bytes], limit: int, content_length: Sequence[str] = ()) -> bytes:
    """The whole body, if it is at most `limit` bytes; BodyTooLarge as soon as it is not."""
    declared = declared_length(content_length)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in chunks:
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge(limit)
        body += chunk
    return bytes(body)


async def request_body(request: Request, limit: int) -> bytes:
    """A Starlette request's body, bounded (BodyError subclasses on failure)."""
    try:
        return await read_bounded(request.stream(), limit, request.headers.getlist("content-length"))
    except ClientDisconnect:
        raise BodyIncomplete from None


async def receive_chunks(receive: Callable[[], Awaitable[dict[str, Any]]]) -> AsyncIterator[bytes]:
    """The body chunks of a raw ASGI request (BodyIncomplete if the client disconnects first)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyIncomplete
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
