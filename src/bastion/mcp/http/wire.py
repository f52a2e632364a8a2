"""Reading an HTTP request off the wire, and refusing one: header parsing, Accept matching, bounded bodies,
and JSON-RPC error replies whose status comes from the one table in mcp.errors."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..errors import McpError, http_status
from ..jsonrpc import RequestId, error_message
from .reply import send_json

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def read_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1")
        if key in headers and key.startswith("mcp-"):
            # Two routing headers that may disagree: mark so the mismatch check refuses the request.
            headers[key] = "\x00duplicate"
            continue
        headers[key] = value.decode("latin-1").strip(" \t")  # a field value excludes surrounding whitespace
    return headers


@functools.lru_cache(maxsize=64)
def accepts(accept: str, media: str) -> bool:
    """Whether an Accept header value admits `media` (a pure function of its arguments, hence the cache)."""
    kinds = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    major = media.split("/", 1)[0]
    return media in kinds or "*/*" in kinds or f"{major}/*" in kinds


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed `limit` (declared or streamed)."""
    declared = headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return b""
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def reject(
    send: Send,
    error: McpError,
    msg_id: RequestId | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with `error` alone, at the status the error table gives it."""
    await send_json(send, http_status(error), error_message(msg_id, error), headers)
