"""The small HTTP client (the gateway's and the span exporter's) against servers that misbehave, each a raw socket
server on loopback answering as scripted: connections are kept alive and reused; one the server closed while idle
is replaced without the request being lost; chunked answers are read; oversized, silent, cut-off and non-HTTP
answers are HttpError; a header that would split the request is never sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from bastion.http_client import HttpError, Origin

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, list[bytes]], object]


@asynccontextmanager
async def scripted(answer: Script) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A server running `answer` on each connection; yields its URL, the requests' heads it read, and a counter
    of connections."""
    heads: list[bytes] = []
    connections = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            await answer(reader, writer, heads)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/mcp", heads, connections


async def read_request(reader: asyncio.StreamReader, heads: list[bytes]) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    heads.append(head)
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    await reader.readexactly(length)


async def keep_answering(reader, writer, heads) -> None:
    while True:
        await read_request(reader, heads)
        writer.write(OK)
        await writer.drain()


async def call(origin: Origin, headers: dict[str, str] | None = None) -> bytes:
    response = await origin.request("POST", headers or {}, b'{"x":1}')
    try:
        return await response.read(1024)
    finally:
        response.close()


async def test_a_connection_is_kept_alive_and_reused():
    async with scripted(keep_answering) as (url, heads, connections):
        origin = Origin(url, timeout=5)
        assert [await call(origin) for _ in range(3)] == [b"{}"] * 3
        await origin.aclose()
    assert connections == [1] and len(heads) == 3
    assert heads[0].startswith(b"POST /mcp HTTP/1.1\r\n") and b"Content-Length: 7" in heads[0]


async def test_an_idle_connection_the_server_closed_is_replaced_and_the_request_is_not_lost():
    async def once_then_close(reader, writer, heads) -> None:
        await read_request(reader, heads)
        writer.write(OK)
        await writer.drain()  # and the server closes it, as idle connections are closed

    async with scripted(once_then_close) as (url, heads, connections):
        origin = Origin(url, timeout=5)
        assert await call(origin) == b"{}"
        await asyncio.sleep(0)  # (the close reaches the client's side whenever it does: either way must work)
        assert await call(origin) == b"{}"
    assert connections == [2] and len(heads) == 2


async def test_a_chunked_answer_is_read_whole():
    async def chunked(reader, writer, heads) -> None:
        await read_request(reader, heads)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with scripted(chunked) as (url, _, _):
        assert await call(Origin(url, timeout=5)) == b"abcde"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, "larger than 1024 bytes"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "closed the connection mid-answer"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not HTTP"),
    ],
)
async def test_answers_that_cannot_be_used_are_http_errors(answer, message):
    async def bad(reader, writer, heads) -> None:
        await read_request(reader, heads)
        writer.write(answer)
        await writer.drain()

    async with scripted(bad) as (url, _, _):
        with pytest.raises(HttpError, match=message):
            await call(Origin(url, timeout=5))


async def test_a_server_that_never_answers_is_a_timeout():
    async def silent(reader, writer, heads) -> None:
        await read_request(reader, heads)
        await reader.read()  # until the client gives up and closes

    async with scripted(silent) as (url, _, _):
        with pytest.raises(HttpError, match=r"no answer within 0\.2 s"):
            await call(Origin(url, timeout=0.2))


async def test_a_header_that_would_split_the_request_is_never_sent():
    async with scripted(keep_answering) as (url, heads, _):
        origin = Origin(url, timeout=5)
        await call(origin, {"x-ok": "fine", "x-evil": "a\r\nInjected: yes", "bad name": "x"})
        await origin.aclose()
    assert b"x-ok: fine" in heads[0]
    assert b"Injected" not in heads[0] and b"bad name" not in heads[0]


async def test_nothing_listening_is_an_http_error():
    from tests.local_server import free_port

    with pytest.raises(HttpError, match="could not connect"):
        await call(Origin(f"http://127.0.0.1:{free_port()}/mcp", timeout=5))
