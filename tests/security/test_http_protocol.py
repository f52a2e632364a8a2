"""The bounded httptools protocol, fed bytes directly: the bound is exact, bodies are not counted, and nothing
past the bound reaches the parser or the application."""

from __future__ import annotations

import asyncio

from uvicorn.config import Config
from uvicorn.server import ServerState

from bastion.security.http_protocol import bounded_httptools

LIMIT = 8192


class Transport:
    def __init__(self, can_write_eof: bool = True) -> None:
        self.written = b""
        self.eof = False
        self.closed = False
        self._can_write_eof = can_write_eof

    def get_extra_info(self, name):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def write(self, data: bytes) -> None:
        assert not self.eof and not self.closed
        self.written += data

    def can_write_eof(self) -> bool:
        return self._can_write_eof

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Connection:
    """A protocol on a fake transport, with an application that records what it was asked and read."""

    def __init__(self, can_write_eof: bool = True) -> None:
        self.requests: list[tuple[str, list, bytes]] = []
        protocol_class = bounded_httptools(LIMIT, max_header_fields=20)
        protocol_class.linger_seconds = 0
        config = Config(app=self.app, http=protocol_class, lifespan="off", log_level="critical", interface="asgi3")
        self.protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
        self.transport = Transport(can_write_eof)
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]

    async def app(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append((scope["path"], scope["headers"], body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def feed(self, *pieces: bytes) -> None:
        for piece in pieces:
            self.protocol.data_received(piece)
            for _ in range(5):  # let the application's tasks and any timer run
                await asyncio.sleep(0)


def head(size: int, path: str = "/x", extra: str = "") -> bytes:
    """A GET head of exactly `size` bytes."""
    bare = f"GET {path} HTTP/1.1\r\nHost: h\r\n{extra}X-Pad: \r\n\r\n"
    return bare.replace("X-Pad: ", "X-Pad: " + "a" * (size - len(bare))).encode()


async def test_a_head_of_exactly_the_bound_is_served():
    connection = Connection()
    await connection.feed(head(LIMIT))
    assert connection.transport.written.startswith(b"HTTP/1.1 200 ")
    assert len(connection.requests) == 1


async def test_one_byte_over_is_431_and_the_application_never_runs():
    connection = Connection()
    await connection.feed(head(LIMIT + 1))
    assert connection.transport.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert connection.transport.eof and connection.transport.closed
    assert connection.requests == []


async def test_the_bound_holds_when_the_head_arrives_a_byte_at_a_time():
    connection = Connection()
    data = head(LIMIT + 100)
    await connection.feed(*(data[i : i + 1] for i in range(len(data))))
    assert connection.transport.written.startswith(b"HTTP/1.1 431 ")
    assert connection.requests == []


async def test_what_follows_a_431_is_dropped_unparsed():
    connection = Connection()
    await connection.feed(head(LIMIT + 1) + head(100, "/after"), b"GET /later HTTP/1.1\r\nHost: h\r\n\r\n")
    assert connection.transport.written.count(b"HTTP/1.1 ") == 1
    assert connection.requests == []


async def test_without_write_eof_the_connection_closes_at_once():
    connection = Connection(can_write_eof=False)
    await connection.feed(head(LIMIT * 2))
    assert connection.transport.written.startswith(b"HTTP/1.1 431 ") and connection.transport.closed


async def test_too_many_fields_is_431():
    fine = "".join(f"X-{i}: 1\r\n" for i in range(18))  # with Host and X-Pad: 20
    connection = Connection()
    await connection.feed(head(500, extra=fine))
    assert connection.transport.written.startswith(b"HTTP/1.1 200 ")
    connection = Connection()
    await connection.feed(head(500, extra=fine + "X-More: 1\r\n"))
    assert connection.transport.written.startswith(b"HTTP/1.1 431 ")
    assert connection.requests == []


async def test_bodies_are_not_counted_even_in_tiny_chunks():
    big = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n" + b"b" * 100_000
    chunked = b"POST /chunks HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nc\r\n" * 20_000
    connection = Connection()
    await connection.feed(big, chunked, b"0\r\n\r\n")
    assert [(path, len(body)) for path, _, body in connection.requests] == [("/upload", 100_000), ("/chunks", 20_000)]
    assert connection.transport.written.count(b"HTTP/1.1 200 ") == 2


async def test_keep_alive_requests_each_get_the_whole_bound():
    connection = Connection()
    await connection.feed(head(LIMIT), head(LIMIT), head(LIMIT))
    assert len(connection.requests) == 3


async def test_a_huge_trailer_closes_the_connection_without_reaching_the_application():
    connection = Connection()
    start = b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Trailer: "
    await connection.feed(start, *(b"t" * 4096 for _ in range(4)))
    assert connection.transport.closed
    assert connection.requests == []
    assert b"431" not in connection.transport.written  # a request under way gets no 431 of its own


async def test_many_trailers_close_the_connection():
    connection = Connection()
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 1000) for i in range(10))
    start = b"POST /t HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
    await connection.feed(start + trailers + b"\r\n")
    assert connection.transport.closed and connection.requests == []


async def test_a_pipelined_oversize_head_lets_the_earlier_request_finish_then_closes():
    connection = Connection()
    connection.protocol.data_received(head(100, "/first") + head(LIMIT * 2, "/second"))
    assert not connection.transport.closed  # /first is still being answered
    await connection.feed()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [path for path, _, _ in connection.requests] == ["/first"]
    assert connection.transport.written.count(b"HTTP/1.1 ") == 1 and connection.transport.closed
