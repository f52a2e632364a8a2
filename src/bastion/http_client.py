"""A small HTTP/1.1 client for busy paths to one origin: the gateway's calls to the servers it fronts, and the
span exporter's posts. Kept-alive connections, responses parsed by httptools (uvicorn's parser), every read
bounded and timed.

Why not httpx: its connection pool checks every idle connection's socket on every request, so with the dozens of
connections a busy gateway keeps open each call cost milliseconds (bench/gateway.py measured 600 calls a second
through it, against 10,000 to the server directly); and each of its requests costs several times this client's
in the server's own time, which the span exporter pays many times a second (bench/operations.py).

A request that meets a kept-alive connection the server has meanwhile closed (nothing of a response read) is sent
once more on a new connection: the server never read it. Anything else that fails is HttpError.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

READ_BYTES = 65536


class HttpError(Exception):
    """The request failed: not connected, timed out, cut off, or an answer that is not HTTP."""


class Origin:
    def __init__(self, url: str, *, timeout: float, connect_timeout: float = 10.0, max_idle: int = 64) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.authority = parts.netloc.encode("idna") if not parts.netloc.isascii() else parts.netloc.encode()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self._idle: deque[_Connection] = deque()

    async def request(
        self, method: str, headers: dict[str, str], body: bytes = b"", *, read_timeout: float | None = None
    ) -> Response:
        """Send the request; the response once its head has arrived (read its body, then close it). Each read of
        the body waits at most `read_timeout` (a stream of events that may be quiet for a while), else the
        origin's timeout."""
        head = [f"{method} {self.path} HTTP/1.1", f"Host: {self.authority.decode()}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items() if _safe(name, value)]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in (1, 2):
            connection, reused = self._connection()
            if connection is None:
                connection = await self._connect()
            try:
                response = await connection.send(message, self)
                if read_timeout is not None:
                    response.read_timeout = read_timeout
                return response
            except _ClosedBeforeAnswer:
                connection.close()
                if not reused or attempt == 2:
                    raise HttpError("the server closed the connection") from None
        raise HttpError("unreachable")  # pragma: no cover - the loop returns or raises

    async def aclose(self) -> None:
        while self._idle:
            self._idle.popleft().close()

    def _connection(self) -> tuple[_Connection | None, bool]:
        while self._idle:
            connection = self._idle.pop()
            if not connection.writer.is_closing() and not connection.reader.at_eof():
                return connection, True
            connection.close()
        return None, False

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls, limit=READ_BYTES * 2)
        except (OSError, TimeoutError) as exc:
            raise HttpError(f"could not connect ({type(exc).__name__})") from None
        return _Connection(reader, writer)

    def _release(self, connection: _Connection) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(connection)
        else:
            connection.close()


class Response:
    def __init__(self, connection: _Connection, origin: Origin) -> None:
        self.connection = connection
        self.origin = origin
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: deque[bytes] = deque()
        self._complete = False
        self._head_done = False
        self._keep_alive = False
        self.read_timeout = origin.timeout
        self.parser = httptools.HttpResponseParser(self)

    # --- httptools callbacks --------------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()  # (the parser forgets it once the message is done)
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self._complete = True

    # --- reading --------------------------------------------------------------------------------------
    async def chunks(self, limit: int) -> AsyncIterator[bytes]:
        """The body as it arrives, at most `limit` bytes (HttpError beyond)."""
        size = 0
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                size += len(chunk)
                if size > limit:
                    raise HttpError(f"the answer is larger than {limit} bytes")
                yield chunk
            if self._complete:
                return
            await self._feed()

    async def read(self, limit: int) -> bytes:
        return b"".join([chunk async for chunk in self.chunks(limit)])

    def close(self) -> None:
        """Done with it: the connection goes back to the pool if the answer was read whole and may be reused."""
        if self._complete and self._keep_alive:
            self.origin._release(self.connection)
        else:
            self.connection.close()

    async def _feed(self) -> None:
        try:
            async with asyncio.timeout(self.read_timeout):
                data = await self.connection.reader.read(READ_BYTES)
        except TimeoutError:
            raise HttpError(f"no answer within {self.read_timeout:g} s") from None
        except OSError as exc:
            raise HttpError(f"the connection failed ({type(exc).__name__})") from None
        if not data:
            if not self._head_done and not self.connection.answered:
                raise _ClosedBeforeAnswer
            raise HttpError("the server closed the connection mid-answer")
        self.connection.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            raise HttpError("the answer is not HTTP") from None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.answered = False  # whether any byte of an answer came on it (a reused one: the previous answers)

    async def send(self, message: bytes, origin: Origin) -> Response:
        self.answered = False
        try:
            self.writer.write(message)
            await self.writer.drain()
        except OSError:
            raise _ClosedBeforeAnswer from None
        response = Response(self, origin)
        try:
            while not response._head_done:
                await response._feed()
        except BaseException:
            self.close()
            raise
        return response

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _ClosedBeforeAnswer(Exception):
    """The connection ended before any byte of an answer: the server never took the request."""


def _safe(name: str, value: str) -> bool:
    """Header names and values that cannot split the request (configured or relayed ones alike)."""
    return bool(_TOKEN.match(name)) and not any(c in value for c in "\r\n\0")


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field names
