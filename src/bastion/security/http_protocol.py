"""uvicorn's httptools protocol with the request head bounded while it arrives (431 above the bound).

uvicorn keeps whatever the parser hands it, and httptools keeps a field's name and value until the field ends:
a 64 MiB header is held, and copied as it grows, before any ASGI code sees it. This protocol counts the bytes
it feeds the parser instead:
- while a request head is incomplete it feeds the parser at most the bound; a head still incomplete there is
  answered 431 and never read further;
- it sums the URL and the fields the parser reports (the head's, and trailers after a chunked body), which also
  bounds a head that starts in the middle of a read, after a pipelined request;
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
        self._field_bytes = 0  # the URL and fields the parser reported for this message
        self._fields = 0
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
    def _count(self, size: int, fields: int) -> None:
        self._field_bytes += size
        self._fields += fields
        if self._field_bytes > self.max_header_bytes or self._fields > self.max_header_fields:
            self._over = True
            raise _HeadTooLarge

    def on_message_begin(self) -> None:
        self._in_head = True
        self._field_bytes = self._fields = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(field_size(name, value), 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = self._quiet = 0
        self._progressed = True
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._progressed = True
        super().on_body(body)

    def on_chunk_header(self) -> None:
        self._progressed = True

    def on_chunk_complete(self) -> None:
        self._progressed = True

    def on_message_complete(self) -> None:
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
