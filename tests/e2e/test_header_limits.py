"""Request heads against a real `bastion serve`: bounded while they arrive (431), whatever the route, with the
server's memory flat and other connections served meanwhile."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bastion.security.limits import DEFAULT_MAX_HEADER_BYTES, MAX_HEADER_FIELDS

from .conftest import EXAMPLES, bastion_server

pytestmark = pytest.mark.e2e
LIMIT = DEFAULT_MAX_HEADER_BYTES
MiB = 1024 * 1024


class Server:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host = parts.netloc
        self.port = parts.port or 80
        self.pid = _pid_listening_on(self.port)

    def status(self, field: str) -> int:
        """A /proc/<pid>/status memory figure, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{field} not in /proc/{self.pid}/status")


def _pid_listening_on(port: int) -> int:
    """The process holding the listening socket on `port` (the server itself, not a wrapper)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if fd.readlink().name.removeprefix("socket:[").removesuffix("]") in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process listens on port {port}")


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with bastion_server(EXAMPLES / "everything.py") as url:
        yield Server(url)


def head(
    server: Server, path: str = "/healthz", fields: list[tuple[str, str]] | None = None, close: bool = True
) -> bytes:
    """A GET's head; with `close`, the server closes the connection once it has answered."""
    ends = ["Connection: close"] if close else []
    lines = [f"GET {path} HTTP/1.1", f"Host: {server.host}", *ends, *(f"{n}: {v}" for n, v in fields or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def padded(server: Server, size: int, path: str = "/healthz") -> bytes:
    """A head of exactly `size` bytes: one X-Pad field fills what the rest leaves."""
    bare = len(head(server, path, [("X-Pad", "")]))
    return head(server, path, [("X-Pad", "a" * (size - bare))])


async def exchange(server: Server, start: bytes, filler: int = 0, sent: list[int] | None = None) -> bytes:
    """Send `start` then `filler` more header bytes while reading; returns all the server answered before it
    closed. `sent` counts what the server took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    counter = sent if sent is not None else [0]

    async def write() -> None:
        try:
            writer.write(start)
            counter[0] += len(start)
            chunk = b"a" * 65536
            remaining = filler
            while remaining > 0:
                piece = chunk[: min(remaining, len(chunk))]
                writer.write(piece)
                await writer.drain()
                counter[0] += len(piece)
                remaining -= len(piece)
            await writer.drain()
        except ConnectionError:
            pass  # the server closed: it had heard enough

    writing = asyncio.create_task(write())
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            answer += chunk
    except ConnectionError:
        pass
    await writing
    writer.close()
    return answer


def assert_431(answer: bytes) -> None:
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower().split(b"\r\n")
    error = json.loads(body)
    assert error["error"]["code"] == -32000
    assert f"{LIMIT} bytes" in error["error"]["message"]


async def test_a_head_at_the_bound_is_served_and_one_byte_more_is_431(server):
    assert (await exchange(server, padded(server, LIMIT))).startswith(b"HTTP/1.1 200 ")
    assert_431(await exchange(server, padded(server, LIMIT + 1)))


async def test_a_large_token_and_cookies_fit(server):
    # What real clients send at most: an 8 KB bearer token and a handful of 4 KB cookies.
    cookies = "; ".join(f"c{i}={'v' * 4000}" for i in range(4))
    fields = [("Authorization", "Bearer " + "t" * 8192), ("Cookie", cookies)]
    assert (await exchange(server, head(server, fields=fields))).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("path", ["/healthz", "/mcp", "/no-such-route"])
async def test_one_mebibyte_header_gets_431_on_any_route(server, path):
    sent = [0]
    assert_431(await exchange(server, head(server, path)[:-2] + b"X-Big: ", filler=MiB, sent=sent))


async def test_too_many_fields_get_431(server):
    # Host and Connection are two fields: MAX_HEADER_FIELDS in all are served, one more is refused.
    fields = [(f"X-F{i}", "1") for i in range(MAX_HEADER_FIELDS - 2)]
    assert (await exchange(server, head(server, fields=fields))).startswith(b"HTTP/1.1 200 ")
    assert_431(await exchange(server, head(server, fields=[*fields, ("X-More", "1")])))


async def test_64_mib_header_leaves_memory_flat_and_others_are_served(server):
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(3):  # warm up, so that what first requests allocate is not counted
            assert (await client.get(f"http://{server.host}/healthz")).status_code == 200
        peak_before = server.status("VmHWM")
        sent = [0]
        attack = asyncio.create_task(exchange(server, head(server)[:-2] + b"X-Big: ", filler=64 * MiB, sent=sent))
        while sent[0] < 4 * MiB and not attack.done():
            await asyncio.sleep(0.01)
        # Another connection is served while the attack is still sending.
        assert (await client.get(f"http://{server.host}/healthz")).json() == {"status": "ok"}
        assert_431(await attack)
        assert (await client.get(f"http://{server.host}/healthz")).status_code == 200
    grown = server.status("VmHWM") - peak_before
    assert grown < 8 * 1024, f"peak RSS grew by {grown} KiB"


async def test_a_slow_head_does_not_hold_other_connections(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(head(server)[:-2] + b"X-Slow: " + b"a" * (LIMIT // 2))
        await writer.drain()
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"http://{server.host}/healthz")).status_code == 200
        writer.write(b"a" * LIMIT)
        await writer.drain()
        assert_431(await asyncio.wait_for(reader.read(), 30))
    finally:
        writer.close()


async def test_a_pipelined_request_with_a_large_head_closes_the_connection(server):
    answer = await exchange(server, head(server, close=False) + padded(server, 2 * LIMIT))
    # The first request is answered; the second is refused with a 431 when the first's reply was complete, and
    # with the connection closed alone when a 431 would land in the middle of that reply.
    # Either way the connection ends: exchange() reads until the server closes it.
    first, *others = answer.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ")
    assert [other[:4] for other in others] in ([], [b"431 "])  # exactly one of the two outcomes


async def test_a_huge_trailer_closes_the_connection(server):
    start = (
        f"POST /no-such-route HTTP/1.1\r\nHost: {server.host}\r\nTransfer-Encoding: chunked\r\n\r\n"
        "1\r\na\r\n0\r\nX-Trailer: "
    ).encode()
    sent = [0]
    await exchange(server, start, filler=64 * MiB, sent=sent)
    assert sent[0] < 32 * MiB  # the server stopped reading long before the end
