"""SafeFetcher against real TLS servers on 127.0.0.1, with DNS answers injected; nothing leaves the machine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.security.fetch import FetchError, SafeFetcher, SystemResolver, cache_seconds, is_forbidden_address

HOSTNAME = "cimd.test"
DOCUMENT = json.dumps({"client_id": "https://cimd.test/client.json", "client_name": "Test"}).encode()

Handler = Callable[[asyncio.StreamWriter], Awaitable[None]]


# --- a throwaway CA and a certificate for cimd.test ---------------------------------------------------------------


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bastion throwaway test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(HOSTNAME), x509.DNSName(f"*.{HOSTNAME}")]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def client_ctx(pki: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki["ca"]))


# --- a small TLS HTTP server with canned behaviours ---------------------------------------------------------------


def raw(data: bytes, then_hang: bool = False) -> Handler:
    async def handler(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        if then_hang:
            await asyncio.sleep(60)

    return handler


def ok(body: bytes = DOCUMENT, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(*chunks: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    for chunk in chunks:
        out += f"{len(chunk):x};ext=1\r\n".encode() + chunk + b"\r\n"
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


async def endless_close_delimited(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    while True:
        writer.write(b"x" * 1024)
        await writer.drain()
        await asyncio.sleep(0.001)


async def endless_chunked(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.001)


async def hang(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(60)


async def drip(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while True:  # always making progress, never finishing: only the overall deadline stops this
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"a")


ROUTES: dict[str, Handler] = {
    "/client.json": raw(ok(DOCUMENT, "Cache-Control: public, max-age=600", "X-Mixed-Case: Yes")),
    "/chunked": raw(chunked(DOCUMENT[:10], DOCUMENT[10:])),
    "/close-delimited": raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + DOCUMENT),
    "/exact": raw(ok(b"x" * 5120)),
    "/redirect": raw(b"HTTP/1.1 302 Found\r\nLocation: https://169.254.169.254/latest/meta-data/\r\n\r\n"),
    "/permanent": raw(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: /client.json\r\nContent-Length: 0\r\n\r\n"),
    "/not-found": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nsecret404"),
    "/big-declared": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100, then_hang=True),
    "/big-exact": raw(ok(b"x" * 5121)),
    "/big-close-delimited": endless_close_delimited,
    "/big-chunked": endless_chunked,
    "/gzip": raw(ok(b"\x1f\x8b", "Content-Encoding: gzip")),
    "/te-gzip": raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    "/te-and-cl": raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    "/two-lengths": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
    "/bad-length": raw(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}"),
    "/truncated": raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}"),
    "/bad-chunk": raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
    "/bad-status": raw(b"HTTP/2 200\r\n\r\n{}"),
    "/folded": raw(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\n{}"),
    "/huge-headers": raw(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 17000 + b"\r\n\r\n{}"),
    "/many-headers": raw(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n{}"),
    "/hang": hang,
    "/drip": drip,
}


class TLSServer:
    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.connections = 0  # accepted, in all
        self.open = 0  # accepted and not yet finished
        self.peak = 0  # the most open at once
        self.gate = asyncio.Event()  # /gated answers once this is set
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    def url(self, path: str, host: str = HOSTNAME) -> str:
        return f"https://{host}:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.append(writer)
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(request)
            path = request.split(b" ", 2)[1].decode().split("?")[0]
            if path == "/gated":
                await self.gate.wait()
                writer.write(ok())
                await writer.drain()
            else:
                await ROUTES.get(path, raw(b"HTTP/1.1 500 No Route\r\n\r\n"))(writer)
            writer.close()
        except (OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
        finally:
            self.open -= 1


@pytest.fixture
async def server(pki: dict[str, Path]) -> AsyncIterator[TLSServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    state = TLSServer()
    listener = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=context)
    state.port = listener.sockets[0].getsockname()[1]
    yield state
    listener.close()
    for task in state.tasks:
        task.cancel()
    with suppress(asyncio.CancelledError):
        await asyncio.gather(*state.tasks, return_exceptions=True)
    for writer in state.writers:
        writer.transport.abort()
    await listener.wait_closed()


def local_fetcher(client_ctx: ssl.SSLContext, **options: object) -> SafeFetcher:
    """A fetcher whose DNS says 127.0.0.1 for every name, and that may reach 127.0.0.1 (tests only)."""
    settings: dict[str, object] = {
        "resolver": lambda host: ["127.0.0.1"],
        "allow_addresses": {"127.0.0.1"},
        "ssl_context": client_ctx,
        "total_timeout": 30.0,  # generous: only the tests about deadlines set a short one
        **options,
    }
    return SafeFetcher(**settings)  # type: ignore[arg-type]


class CountingResolver:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        return self.answers


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any attempt to open a connection fails the test (and is recorded)."""
    attempts: list[object] = []

    async def refuse(*args: object, **kwargs: object) -> None:
        attempts.append((args, kwargs))
        raise AssertionError("SafeFetcher tried to connect")

    monkeypatch.setattr(asyncio, "open_connection", refuse)
    return attempts


# --- success --------------------------------------------------------------------------------------------------------


async def test_fetches_a_document_with_content_length(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    url = server.url("/client.json")
    fetched = await local_fetcher(client_ctx).get(url)
    assert fetched.status == 200
    assert fetched.body == DOCUMENT
    assert fetched.url == url
    assert fetched.headers["content-type"] == "application/json"
    assert fetched.headers["x-mixed-case"] == "Yes"
    assert all(name == name.lower() for name in fetched.headers)
    assert cache_seconds(fetched.headers, default=60, maximum=3600) == 600


async def test_fetches_a_chunked_document(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    fetched = await local_fetcher(client_ctx).get(server.url("/chunked"))
    assert fetched.body == DOCUMENT
    assert "x-trailer" not in fetched.headers


async def test_fetches_a_close_delimited_document(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    assert (await local_fetcher(client_ctx).get(server.url("/close-delimited"))).body == DOCUMENT


async def test_a_body_of_exactly_max_bytes_is_fine(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    assert len((await local_fetcher(client_ctx).get(server.url("/exact"))).body) == 5120


async def test_sends_a_minimal_request_to_the_original_host(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    await local_fetcher(client_ctx).get(server.url("/client.json?a=1&b=2"))
    lines = server.requests[0].decode("ascii").split("\r\n")
    assert lines[0] == "GET /client.json?a=1&b=2 HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert headers == {
        "Host": f"{HOSTNAME}:{server.port}",
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": "bastion",
        "Connection": "close",
    }


async def test_resolves_once_and_connects_to_the_checked_address(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    resolver = CountingResolver("127.0.0.1")
    fetcher = local_fetcher(client_ctx, resolver=resolver)
    await fetcher.get(server.url("/client.json"))
    assert resolver.calls == [HOSTNAME]
    assert server.connections == 1


class Tripwire(concurrent.futures.ThreadPoolExecutor):
    """A default executor that records, and refuses, anything submitted to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[object] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted.append(fn)
        raise AssertionError("the loop's default executor was used")


@pytest.fixture
async def default_executor() -> Tripwire:
    tripwire = Tripwire()
    asyncio.get_running_loop().set_default_executor(tripwire)
    return tripwire


@pytest.fixture
async def loop_lookups(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Lookups through the event loop (loop.getaddrinfo) are recorded and fail."""
    calls: list[object] = []

    async def getaddrinfo(host: object, *args: object, **kwargs: object) -> list[object]:
        calls.append(host)
        raise AssertionError("loop.getaddrinfo was used")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    return calls


def answering(*addresses: str, calls: list[object] | None = None) -> Callable[..., list[tuple[Any, ...]]]:
    """A getaddrinfo that answers `addresses` at once (recording the host in `calls`)."""

    def getaddrinfo(host: str, port: object, **kwargs: object) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, 0))
            for a in addresses
        ]

    return getaddrinfo


async def test_system_resolver_is_asked_exactly_once(
    server: TLSServer,
    client_ctx: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
    default_executor: Tripwire,
    loop_lookups: list[object],
) -> None:
    """Every getaddrinfo call is counted, including any the connection itself might make: there is just one, on
    a thread of the resolver's own, never through the event loop or its default executor."""
    calls: list[object] = []
    monkeypatch.setattr(socket, "getaddrinfo", answering("127.0.0.1", calls=calls))
    fetcher = SafeFetcher(ssl_context=client_ctx, allow_addresses={"127.0.0.1"}, total_timeout=30.0)
    assert isinstance(fetcher._resolver, SystemResolver)  # the default
    assert (await fetcher.get(server.url("/client.json"))).body == DOCUMENT
    assert calls == [HOSTNAME]
    assert loop_lookups == [] and default_executor.submitted == []


# --- refused responses ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/redirect", "redirect refused (status 302)"),
        ("/permanent", "redirect refused (status 308)"),
        ("/not-found", "unexpected status 404"),
        ("/big-declared", "larger than 5120 bytes"),
        ("/big-exact", "larger than 5120 bytes"),
        ("/big-close-delimited", "larger than 5120 bytes"),
        ("/big-chunked", "larger than 5120 bytes"),
        ("/gzip", "Content-Encoding"),
        ("/te-gzip", "Transfer-Encoding"),
        ("/te-and-cl", "both Transfer-Encoding and Content-Length"),
        ("/two-lengths", "Content-Length"),
        ("/bad-length", "Content-Length"),
        ("/truncated", "closed before the response was complete"),
        ("/bad-chunk", "malformed chunked"),
        ("/bad-status", "status line"),
        ("/folded", "malformed response header"),
        ("/huge-headers", "header section too large"),
        ("/many-headers", "too many response headers"),
    ],
)
async def test_bad_responses_are_refused(server: TLSServer, client_ctx: ssl.SSLContext, path: str, reason: str) -> None:
    with pytest.raises(FetchError) as caught:
        await local_fetcher(client_ctx).get(server.url(path))
    assert reason in caught.value.reason  # refused on sight: running into the deadline would say so instead
    assert "secret404" not in str(caught.value)  # never quotes the response
    assert server.connections == 1  # a redirect is not followed


async def test_a_server_that_never_answers_hits_the_deadline(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    with pytest.raises(FetchError, match="no complete response within 1 s"):
        await local_fetcher(client_ctx, total_timeout=1.0).get(server.url("/hang"))


async def test_a_slow_drip_hits_the_overall_deadline(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    # Every read makes progress, so only the overall deadline (named in the message) can end it.
    with pytest.raises(FetchError, match=re.escape("no complete response within 0.5 s")):
        await local_fetcher(client_ctx, total_timeout=0.5).get(server.url("/drip"))


async def test_a_stalled_tls_handshake_hits_the_connect_timeout(client_ctx: ssl.SSLContext) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()  # plain TCP: accepts, never speaks TLS

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        # The connect timeout (0.3 s) ends it, not the overall deadline (30 s), which would say otherwise.
        with pytest.raises(FetchError, match="connect timed out"):
            await local_fetcher(client_ctx, connect_timeout=0.3, total_timeout=30.0).get(f"https://{HOSTNAME}:{port}/")
    finally:
        listener.close()
        for writer in writers:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


async def test_a_certificate_for_another_name_is_refused(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    with pytest.raises(FetchError, match=re.escape("TLS certificate for other.test did not verify")):
        await local_fetcher(client_ctx).get(server.url("/client.json", host="other.test"))


async def test_an_ip_literal_is_verified_against_the_ip(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    with pytest.raises(FetchError, match="did not verify"):  # the certificate names cimd.test, not 127.0.0.1
        await local_fetcher(client_ctx).get(server.url("/client.json", host="127.0.0.1"))


async def test_an_untrusted_ca_is_refused(server: TLSServer) -> None:
    fetcher = SafeFetcher(resolver=lambda host: ["127.0.0.1"], allow_addresses={"127.0.0.1"}, total_timeout=30.0)
    with pytest.raises(FetchError, match="did not verify"):
        await fetcher.get(server.url("/client.json"))


def test_a_non_verifying_ssl_context_is_rejected() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    with pytest.raises(ValueError):
        SafeFetcher(ssl_context=context)
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError):
        SafeFetcher(ssl_context=context)


# --- refused URLs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://cimd.test/client.json",
        "file:///etc/passwd",
        "data:application/json,{}",
        "javascript:alert(1)",
        "ftp://cimd.test/client.json",
        "gopher://cimd.test/",
        "HTTPS://cimd.test/client.json",
        "https:cimd.test/client.json",
        "https:/cimd.test/client.json",
        "https:///client.json",
        "//cimd.test/client.json",
        "https://user@cimd.test/client.json",
        "https://user:pass@cimd.test/client.json",
        "https://cimd.test@169.254.169.254/",
        "https://cimd.test/client.json#frag",
        "https://cimd.test/client.json#",
        "https://cimd.test\\@evil.test/",
        "https://cimd.test/a\\b",
        "https://cimd.test/client json",
        " https://cimd.test/client.json",
        "https://cimd.test/client.json\n",
        "https://cimd.test/\tx",
        "https://cimd.test/\x00",
        "https://cimd.test/\x7f",
        "https://cimd.tést/client.json",
        "https://cimd.test/clíent.json",
        "https://cimd.test/" + "a" * 2000,
        "https://cimd.test:0/",
        "https://cimd.test:99999/",
        "https://cimd.test:/",
        "https://cimd.test:12ab/",
        "https://cimd_test/",
        "https://-cimd.test/",
        "https://%31%32%37.0.0.1/",
        "https://127.1/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://0177.0.0.1/",
        "https://localhost/",
        "https://LOCALHOST./",
        "https://api.localhost/",
        "https://[fe80::1%25eth0]/",
        "https://[::1/",
        "https://[::1]x/",
        "https://[not-an-ip]/",
    ],
)
async def test_bad_urls_are_refused_before_any_lookup(url: str, no_connect: list[object]) -> None:
    resolver = CountingResolver("93.184.215.14")
    with pytest.raises(FetchError):
        await SafeFetcher(resolver=resolver).get(url)
    assert resolver.calls == []
    assert no_connect == []


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://10.0.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/",
        "https://[::ffff:169.254.169.254]/",
        "https://[::ffff:7f00:1]:8443/",
        "https://[fd00:ec2::254]/latest/meta-data/",
        "https://[64:ff9b::a9fe:a9fe]/",
    ],
)
async def test_forbidden_ip_literals_are_refused_without_lookup(url: str, no_connect: list[object]) -> None:
    resolver = CountingResolver("93.184.215.14")
    with pytest.raises(FetchError, match="forbidden address"):
        await SafeFetcher(resolver=resolver).get(url)
    assert resolver.calls == []
    assert no_connect == []


def test_a_url_of_2000_characters_is_still_fine() -> None:
    from bastion.security.fetch import _parse_url  # the limit is inclusive; this checks the boundary only

    url = "https://cimd.test/" + "a" * (2000 - len("https://cimd.test/"))
    assert len(url) == 2000
    target = _parse_url(url)
    assert (target.host, target.port, target.host_header) == (HOSTNAME, 443, HOSTNAME)


# --- forbidden addresses --------------------------------------------------------------------------------------------

FORBIDDEN = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:8.8.8.8",
    "::127.0.0.1",
    "::ffff:0:7f00:1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "fc00::1",
    "fd12:3456::1",
    "fd00:ec2::254",
    "ff02::1",
    "ff0e::1",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::a00:1",
    "64:ff9b:1::808:808",
    "2002:7f00:1::1",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:db8::1",
    "3fff::1",
    "100::1",
    "not-an-ip",
    "",
]

PUBLIC = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::200e", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden_addresses(address: str) -> None:
    assert is_forbidden_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert not is_forbidden_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "fe80::1",
        "224.0.0.1",
        "0.0.0.0",
        "fd00:ec2::254",
        "64:ff9b::7f00:1",
        "172.16.0.1",
        "192.168.0.1",
        "255.255.255.255",
    ],
)
async def test_names_resolving_to_forbidden_addresses_are_refused_without_connecting(
    address: str, no_connect: list[object]
) -> None:
    resolver = CountingResolver(address)
    with pytest.raises(FetchError, match=re.escape("cimd.test resolves to a forbidden address")):
        await SafeFetcher(resolver=resolver).get("https://cimd.test/client.json")
    assert resolver.calls == [HOSTNAME]
    assert no_connect == []


@pytest.mark.parametrize(
    "answers",
    [
        ["93.184.215.14", "10.0.0.1"],
        ["10.0.0.1", "93.184.215.14"],
        ["2606:4700:4700::1111", "::ffff:127.0.0.1"],
        ["93.184.215.14", "169.254.169.254"],
    ],
)
async def test_one_forbidden_answer_among_public_ones_is_refused(answers: list[str], no_connect: list[object]) -> None:
    with pytest.raises(FetchError, match="forbidden address"):
        await SafeFetcher(resolver=CountingResolver(*answers)).get("https://cimd.test/client.json")
    assert no_connect == []


async def test_allow_addresses_is_exact(no_connect: list[object]) -> None:
    """Allowing 127.0.0.1 lets nothing else through, not even the rest of 127/8 or another private address."""
    for answers in (["127.0.0.2"], ["127.0.0.1", "10.0.0.1"], ["::1"]):
        fetcher = SafeFetcher(resolver=CountingResolver(*answers), allow_addresses={"127.0.0.1"})
        with pytest.raises(FetchError, match="forbidden address"):
            await fetcher.get("https://cimd.test/client.json")
    assert no_connect == []


async def test_system_resolver_answers_are_all_checked(
    monkeypatch: pytest.MonkeyPatch, no_connect: list[object]
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(socket, "getaddrinfo", answering("93.184.215.14", "fd00:ec2::254", calls=calls))
    with pytest.raises(FetchError, match="forbidden address"):
        await SafeFetcher().get("https://cimd.test/client.json")
    assert calls == [HOSTNAME]
    assert no_connect == []


@pytest.mark.parametrize("answers", [[], ["not-an-ip"], ["10.0.0.1; rm -rf /"]])
async def test_unusable_dns_answers_are_refused(answers: list[str], no_connect: list[object]) -> None:
    with pytest.raises(FetchError):
        await SafeFetcher(resolver=CountingResolver(*answers)).get("https://cimd.test/client.json")
    assert no_connect == []


async def test_dns_failure_is_a_fetch_error(no_connect: list[object]) -> None:
    def fail(host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(FetchError, match=re.escape("could not resolve cimd.test")):
        await SafeFetcher(resolver=fail).get("https://cimd.test/client.json")


async def test_slow_dns_counts_against_the_deadline(no_connect: list[object]) -> None:
    async def slow(host: str) -> list[str]:
        await asyncio.sleep(10)
        return ["93.184.215.14"]

    with pytest.raises(FetchError, match=re.escape("no complete response within 0.2 s")):
        await SafeFetcher(resolver=slow, total_timeout=0.2).get("https://cimd.test/client.json")


# --- cache_seconds --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, 300),
        ("max-age=60", 60),
        ("public, max-age=600", 600),
        ("MAX-AGE=42", 42),
        ('max-age="30"', 30),
        ("max-age=0", 0),
        ("max-age=999999", 3600),
        ("max-age=99999999999999999999999", 3600),
        ("no-store", 0),
        ("no-cache", 0),
        ("max-age=600, no-cache", 0),
        ('no-cache="set-cookie", max-age=600', 0),
        ("private, no-store, max-age=600", 0),
        ("public", 300),
        ("s-maxage=10", 300),
        ("s-maxage=10, max-age=20", 20),
        ("max-age=abc", 300),
        ("max-age=-5", 300),
        ("max-age=", 300),
        ("max-age", 300),
        ("max-age=1.5", 300),
        ("max-age=１２", 300),
        ("max-age=10, max-age=20", 300),
        ("max-age=10, max-age=10", 10),
        ("", 300),
        (",,,", 300),
    ],
)
def test_cache_seconds(value: str | None, expected: int) -> None:
    headers = {} if value is None else {"cache-control": value}
    assert cache_seconds(headers, default=300, maximum=3600) == expected


def test_cache_seconds_bounds() -> None:
    assert cache_seconds({"Cache-Control": "max-age=60"}, default=300, maximum=3600) == 60  # any header case
    assert cache_seconds({}, default=9999, maximum=3600) == 3600  # the default is capped too
    assert cache_seconds({}, default=-5, maximum=3600) == 0
    assert cache_seconds({"cache-control": "max-age=60"}, default=300, maximum=-1) == 0


async def test_pinned_hosts_reach_their_internal_address_and_nothing_else_does(monkeypatch):
    calls: list[str] = []

    async def resolver(host: str) -> list[str]:
        calls.append(host)
        return ["10.0.0.5"]  # another name pointing at the pinned internal address

    fetcher = SafeFetcher(resolver=resolver, pinned_hosts={"clients.intranet": "10.0.0.5"})
    with pytest.raises(FetchError, match="forbidden"):
        await fetcher.get("https://other.example/client.json")
    assert calls == ["other.example"]

    attempts: list[str] = []

    async def fake_connect(*args, **kwargs):
        attempts.append(kwargs["host"])
        raise OSError("stop here")

    monkeypatch.setattr(asyncio, "open_connection", fake_connect)
    with pytest.raises(FetchError, match="connection failed"):
        await fetcher.get("https://clients.intranet/client.json")
    assert attempts == ["10.0.0.5"] and calls == ["other.example"]  # the pinned name needed no DNS


# --- caps on connections, and lookups that never answer -------------------------------------------------------------


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll, yielding to the event loop, until `condition` holds (giving up after a generous number of rounds)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_connections_to_one_host_are_capped(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    fetcher = local_fetcher(client_ctx, max_connections_per_host=3, max_connections=10, total_timeout=30.0)
    fetches = [asyncio.create_task(fetcher.get(server.url("/gated"))) for _ in range(8)]
    # Three connections reach the slow host; the five other fetches wait for a slot, holding no socket.
    await until(lambda: server.open == 3 and fetcher.slots.waiting == 5, "3 connected and 5 waiting")
    assert server.peak == 3 and server.connections == 3 and fetcher.slots.open == 3
    server.gate.set()
    results = await asyncio.gather(*fetches)
    assert [r.body for r in results] == [DOCUMENT] * 8
    assert server.connections == 8 and server.peak == 3  # never more than three at once
    assert (fetcher.slots.open, fetcher.slots.waiting, fetcher.slots.hosts()) == (0, 0, 0)  # nothing kept


async def test_connections_are_capped_in_all(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    fetcher = local_fetcher(client_ctx, max_connections_per_host=2, max_connections=3, total_timeout=30.0)
    urls = [server.url("/gated", host=f"{name}.{HOSTNAME}") for name in ("a", "b") for _ in range(3)]
    fetches = [asyncio.create_task(fetcher.get(url)) for url in urls]
    await until(lambda: server.open == 3 and fetcher.slots.waiting == 3, "3 connected and 3 waiting")
    assert server.peak == 3
    server.gate.set()
    assert [r.body for r in await asyncio.gather(*fetches)] == [DOCUMENT] * 6
    assert server.connections == 6 and server.peak == 3
    hosts = sorted(re.search(rb"Host: ([a-z.]+)", r).group(1) for r in server.requests)  # type: ignore[union-attr]
    assert hosts == [b"a.cimd.test"] * 3 + [b"b.cimd.test"] * 3


async def test_a_full_queue_for_one_host_refuses_at_once(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    fetcher = local_fetcher(
        client_ctx, max_connections_per_host=1, max_waiting_per_host=1, max_connections=10, total_timeout=30.0
    )
    first = asyncio.create_task(fetcher.get(server.url("/gated")))
    second = asyncio.create_task(fetcher.get(server.url("/gated")))
    await until(lambda: server.open == 1 and fetcher.slots.waiting == 1, "one connected, one waiting")
    with pytest.raises(FetchError, match=re.escape("too many fetches from cimd.test in progress")):
        await fetcher.get(server.url("/gated"))
    # Another host has its own queue.
    other = asyncio.create_task(fetcher.get(server.url("/gated", host=f"other.{HOSTNAME}")))
    await until(lambda: server.open == 2, "the other host connected")
    server.gate.set()
    assert [r.status for r in await asyncio.gather(first, second, other)] == [200, 200, 200]
    assert server.connections == 3  # the refused fetch never connected


async def test_waiting_for_a_slot_counts_against_the_deadline(server: TLSServer, client_ctx: ssl.SSLContext) -> None:
    holder = local_fetcher(client_ctx, max_connections_per_host=1, total_timeout=30.0)
    first = asyncio.create_task(holder.get(server.url("/gated")))
    await until(lambda: server.open == 1, "the first fetch connected")
    holder.total_timeout = 0.2  # the next fetch cannot get a slot before its deadline
    with pytest.raises(FetchError, match=re.escape("no free connection to cimd.test within 0.2 s")):
        await holder.get(server.url("/gated"))
    assert holder.slots.waiting == 0 and server.connections == 1
    server.gate.set()
    assert (await first).status == 200


async def test_a_lookup_that_never_answers_delays_no_other_host(
    server: TLSServer, client_ctx: ssl.SSLContext, default_executor: Tripwire
) -> None:
    answer = asyncio.Event()
    asked: list[str] = []

    async def resolver(host: str) -> list[str]:
        asked.append(host)
        if host.startswith("stuck"):
            await answer.wait()  # a DNS server that never answers
        return ["127.0.0.1"]

    fetcher = local_fetcher(client_ctx, resolver=resolver, max_connections=2, resolve_timeout=30.0, total_timeout=30.0)
    stuck = [asyncio.create_task(fetcher.get(f"https://stuck{i}.{HOSTNAME}:{server.port}/x")) for i in range(10)]
    await until(lambda: len(asked) == 10, "ten lookups waiting")
    # More fetches are stuck in lookups than there are connection slots, and yet:
    assert (await fetcher.get(server.url("/client.json"))).body == DOCUMENT
    assert not any(task.done() for task in stuck) and fetcher.slots.open == 0
    assert default_executor.submitted == []
    for task in stuck:
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)


async def test_lookups_that_never_return_hold_a_bounded_number_of_threads(
    server: TLSServer, client_ctx: ssl.SSLContext, default_executor: Tripwire, loop_lookups: list[object]
) -> None:
    release = threading.Event()
    calls: list[str] = []

    def getaddrinfo(host: str, port: object, **kwargs: object) -> list[tuple[Any, ...]]:
        calls.append(host)
        if host.startswith("stuck"):
            release.wait(30)  # a getaddrinfo call blocked in the C library: nothing can cancel it
        return answering("127.0.0.1")(host, port)

    resolver = SystemResolver(max_lookups=2, getaddrinfo=getaddrinfo)
    fetcher = local_fetcher(client_ctx, resolver=resolver, resolve_timeout=0.05)
    try:
        for name in ("stuck1", "stuck2", "stuck1"):
            with pytest.raises(FetchError, match=re.escape(f"name lookup of {name}.cimd.test took longer than 0.05 s")):
                await fetcher.get(f"https://{name}.{HOSTNAME}:{server.port}/client.json")
        # The caller gave up; the threads are still blocked, and counted: one per name, two in all.
        assert resolver.threads == 2 and calls == ["stuck1.cimd.test", "stuck2.cimd.test"]
        # Full: a further lookup fails at once instead of queueing behind stuck ones.
        with pytest.raises(FetchError, match=re.escape("could not resolve cimd.test: too many name lookups")):
            await fetcher.get(server.url("/client.json"))
        assert len(calls) == 2 and server.connections == 0
    finally:
        release.set()
    await until(lambda: resolver.threads == 0, "the blocked lookups returned and freed their threads")
    assert (await fetcher.get(server.url("/client.json"))).body == DOCUMENT
    assert calls[-1] == HOSTNAME
    assert default_executor.submitted == [] and loop_lookups == []


async def test_lookups_of_one_name_share_a_thread_and_its_answer() -> None:
    release = threading.Event()
    calls: list[str] = []

    def getaddrinfo(host: str, port: object, **kwargs: object) -> list[tuple[Any, ...]]:
        calls.append(host)
        release.wait(30)
        return answering("93.184.215.14")(host, port)

    resolver = SystemResolver(max_lookups=1, getaddrinfo=getaddrinfo)
    lookups = [asyncio.create_task(resolver("Cimd.Test")) for _ in range(5)]
    await until(lambda: calls == [HOSTNAME], "one lookup started")
    release.set()
    assert await asyncio.gather(*lookups) == [["93.184.215.14"]] * 5
    assert calls == [HOSTNAME] and resolver.threads == 0


def test_limits_must_be_positive() -> None:
    for options in ({"max_connections": 0}, {"max_connections_per_host": 0}, {"resolve_timeout": 0}):
        with pytest.raises(ValueError):
            SafeFetcher(**options)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SystemResolver(max_lookups=0)
