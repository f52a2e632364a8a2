"""uvicorn's httptools protocol with the request head bounded while it arrives (431 above the bound).

uvicorn keeps whatever the parser hands it, and httptools keeps a field's name and value until the field ends:
a 64 MiB header is held, and copied as it grows, before any ASGI code sees it. This protocol counts the bytes
it feeds the parser instead:
- while a request head is incomplete it feeds the parser at most the bound; a head still incomplete there is
  answered 431 and never read further;
- trailers (fields after a chunked body) are summed when the request completes, which is refused (the
  connection closes) above the same bounds;
- a head that starts in the middle of a read, after a pipelined request, was not counted while it arrived: its
  URL and fields are summed once it is complete (and the field count is checked for every head). This runs once
  per request rather than once per field, which keeps the bound nearly free on the hot path;
- inside a body, more than the bound without any body data or chunk boundary (a huge trailer or chunk
  extension) closes the connection.
After a 431 the rest of what the client sends is dropped unread for a moment, so that a client still sending
reads the answer rather than a reset, then the connection closes. A head that starts in the same read as the
end of a pipelined request may reach twice the bound before it is refused.

uvicorn's h11 protocol bounds the head itself (`h11_max_incomplete_event_size`, 16 KiB by default) and answers
400 above it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .limits import DEFAULT_MAX_HEADER_BYTES, MAX_HEADER_FIELDS, REASON, STATUS, body, field_size


class _HeadTooLarge(Exception):
    """Raised from a parser callback: stops the parser in the middle of the data it was fed."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Use `bounded_httptools(...)` to get one with other bounds: uvicorn builds protocols from a class."""

    max_header_bytes = DEFAULT_MAX_HEADER_BYTES
    max_header_fields = MAX_HEADER_FIELDS
    linger_seconds = 2.0  # how long what follows a 431 is read and dropped before the connection closes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0  # bytes fed to the parser in this head
        self._feeding_body = False  # the parser is being fed what followed a head (body, or a pipelined request)
        self._head_from_body = False  # this head began inside such a feed, so data_received did not count it
        self._head_fields = 0
        self._quiet = 0  # body bytes fed since the parser last reported body data or a chunk boundary
        self._progressed = False
        self._over = False
        self._refused = False
        self._linger: asyncio.TimerHandle | None = None

    # --- feeding the parser ---------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered already: what the client still sends is dropped unread
        self._unset_keepalive_if_required()
        while data:
            in_head = self._in_head
            if in_head:
                room = self.max_header_bytes - self._head_bytes
                piece, data = data[:room], data[room:]
                self._head_bytes += len(piece)
            else:
                piece, data = data, b""
                self._progressed = False
            self._feeding_body = not in_head
            if not self._feed(piece):
                return
            if in_head:
                if self._in_head and self._head_bytes >= self.max_header_bytes:
                    self._refuse()
                    return
            else:
                self._quiet = 0 if self._progressed else self._quiet + len(piece)
                if self._quiet > self.max_header_bytes:
                    self._refuse()
                    return

    def _feed(self, piece: bytes) -> bool:
        """False when the connection is done with: refused, invalid, or handed to another protocol."""
        try:
            self.parser.feed_data(piece)
        except httptools.HttpParserError:
            if self._over:
                self._refuse()
            else:
                message = "Invalid HTTP request received."
                self.logger.warning(message)
                self.send_400_response(message)
            return False
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        return True

    def _refuse(self) -> None:
        self._refused = True
        self.logger.warning(
            "Request head over %d bytes or %d fields refused.", self.max_header_bytes, self.max_header_fields
        )
        if self.transport.is_closing():
            return
        if not self._in_head:
            # Trailers or chunk framing of a request under way: that request can never complete.
            self.transport.close()
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # Earlier pipelined requests are answered first, then the connection closes: a 431 written now would
            # land in the middle of their replies.
            self.cycle.keep_alive = False
            return
        content = body(self.max_header_bytes, self.max_header_fields)
        head = [b"HTTP/1.1 %d %s\r\n" % (STATUS, REASON)]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(content),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + content)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(self.linger_seconds, self.transport.close)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    # --- parser callbacks -----------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_from_body = self._feeding_body
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        if len(self.headers) > self.max_header_fields or (
            self._head_from_body and self._head_size() > self.max_header_bytes
        ):
            self._over = True
            raise _HeadTooLarge
        self._head_fields = len(self.headers)  # any field reported after this is a trailer
        self._in_head = False
        self._head_bytes = self._quiet = 0
        self._progressed = True
        super().on_headers_complete()

    def _head_size(self) -> int:
        return len(self.url) + sum(field_size(name, value) for name, value in self.headers)

    def on_body(self, body: bytes) -> None:
        self._progressed = True
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self._progressed = True

    def on_chunk_complete(self) -> None:
        self._progressed = True

    def on_message_complete(self) -> None:
        trailers = self.headers[self._head_fields :]
        if trailers and (
            len(trailers) > self.max_header_fields
            or sum(field_size(name, value) for name, value in trailers) > self.max_header_bytes
        ):
            self._over = True
            raise _HeadTooLarge  # the request never completes: the connection closes
        self._in_head = True
        self._head_bytes = 0
        self._progressed = True
        super().on_message_complete()


def bounded_httptools(
    max_header_bytes: int, max_header_fields: int = MAX_HEADER_FIELDS
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to pass to uvicorn: `uvicorn.run(app, http=bounded_httptools(32768))`."""
    limit, fields = max_header_bytes, max_header_fields

    class Protocol(BoundedHttpToolsProtocol):
        max_header_bytes = limit
        max_header_fields = fields

    return Protocol
