"""An SSRF-safe HTTPS GET for documents named by untrusted URLs (OAuth Client ID Metadata Documents).

Threat model: anyone can present a client_id such as ``https://app.example.com/oauth/client.json`` and so make the
server fetch a URL of their choosing. Without care that turns the server into a proxy into its own network: the
cloud metadata service (169.254.169.254, fd00:ec2::254), loopback admin ports, private ranges, or, through DNS
rebinding, a name that resolves to a public address when checked and to a private one when connected. So:

* only plain ``https://host[:port]/path[?query]`` URLs are accepted (no userinfo, fragments, odd characters);
* the name is resolved once, every address is checked, and the connection goes to a checked address; TLS is
  verified against the original hostname, so the answer really comes from that name;
* redirects are never followed, only 200 counts, and the body, headers and time spent are all tightly bounded;
* one deadline covers the whole fetch (lookup, waiting for a connection slot, connect, read);
* names are resolved on a small dedicated set of threads (security/resolve.py), never the event loop's default
  executor, with a shorter deadline of their own: a DNS server that never answers delays only lookups;
* open connections are capped in all and per host (security/slots.py), so a burst of requests naming one
  slow host opens only a few sockets, and lookups in progress hold no connection slot.

Error messages say what was refused, never what the response contained. They are for the log: they name hosts,
addresses refused and statuses, which a page shown to whoever chose the URL should not (it would make the
server an oracle on its own network).
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .resolve import ResolverBusy, SystemResolver
from .slots import ConnectionSlots, SlotsFull

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FetchError",
    "Fetched",
    "Resolver",
    "SafeFetcher",
    "SystemResolver",
    "cache_seconds",
    "is_forbidden_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: A resolver maps a hostname to IP address strings; it may be a plain or an async function.
Resolver = Callable[[str], Awaitable[Iterable[str]] | Iterable[str]]

DEFAULT_MAX_BYTES = 5 * 1024
MAX_URL_CHARS = 2000
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
USER_AGENT = "bastion"

_V4_BLOCKED = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", includes the unspecified 0.0.0.0
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, includes the cloud metadata service 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
    )
)

_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # well-known NAT64 prefix: the low 32 bits are an IPv4 address
_V6_CLOUD_METADATA = ipaddress.IPv6Address("fd00:ec2::254")
_V6_BLOCKED = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/32",  # Teredo: tunnels to an embedded IPv4 address
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: tunnels to an embedded IPv4 address
        "3fff::/20",  # documentation
        "fc00::/7",  # unique local, includes fd00:ec2::254
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_STATUS_LINE = re.compile(r"^HTTP/1\.[01] ([1-9][0-9]{2})(?: [^\r\n]*)?$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_CHUNK_SIZE = re.compile(r"^[0-9A-Fa-f]{1,8}$")
_NETLOC = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")


class FetchError(Exception):
    """The fetch was refused or failed; `reason` is safe to log and to show (it never quotes the response)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Fetched:
    """A successful (status 200) response."""

    status: int
    headers: dict[str, str] = field(repr=False)  # lower-case names; repeated headers joined with ", "
    body: bytes = field(repr=False)
    url: str


def _v4_forbidden(ip: ipaddress.IPv4Address) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in _V4_BLOCKED)
    )


def is_forbidden_address(address: str | IPAddress) -> bool:
    """True for every address a fetch must never reach: anything but public unicast, in any disguise.

    Strings that are not IP addresses (including ones with an IPv6 zone such as ``fe80::1%eth0``) are forbidden.
    """
    if isinstance(address, str):
        try:
            ip: IPAddress = ipaddress.ip_address(address)
        except ValueError:
            return True
    else:
        ip = address
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_forbidden(ip)
    if ip.scope_id is not None or ip == _V6_CLOUD_METADATA:
        return True
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 address in IPv6 clothing: refuse outright
        return True
    if ip in _V6_NAT64:  # DNS64 answers for IPv4-only hosts: fine exactly when the embedded IPv4 is
        return _v4_forbidden(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None or ip.teredo is not None:
        return True
    return (
        ip not in _V6_GLOBAL_UNICAST
        or not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_site_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in _V6_BLOCKED)
    )


@dataclass(frozen=True, slots=True)
class _Target:
    host: str  # lower-case name or IP address, IPv6 without brackets
    literal: IPAddress | None  # set when the URL names an IP address instead of a host name
    port: int
    request_target: str  # path and query
    host_header: str


def _ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(host)  # strict dotted quad only
    except ValueError:
        return None


def _check_host_name(host: str) -> None:
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise FetchError("URL has an invalid host name")
    if _NUMERIC_LABEL.match(labels[-1]):  # 127.1, 2130706433, 0x7f.1: IPv4 in disguise for some parsers
        raise FetchError("URL has a numeric host that is not a plain IPv4 address")
    if host == "localhost" or host.endswith(".localhost"):
        raise FetchError("URL names localhost")


def _parse_url(url: str) -> _Target:
    if not isinstance(url, str):
        raise FetchError("URL must be a string")
    if len(url) > MAX_URL_CHARS:
        raise FetchError(f"URL longer than {MAX_URL_CHARS} characters")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise FetchError("URL contains whitespace, control or non-ASCII characters")
    if "\\" in url:
        raise FetchError("URL contains a backslash")
    if "#" in url:
        raise FetchError("URL has a fragment")
    if not url.startswith("https://"):
        raise FetchError("only https:// URLs are fetched")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchError("URL is malformed") from None
    if parts.scheme != "https":
        raise FetchError("only https:// URLs are fetched")
    netloc = parts.netloc
    if "@" in netloc:
        raise FetchError("URL has user information")
    if not _NETLOC.match(netloc):
        raise FetchError("URL has a malformed host or port")
    if port is None:
        port = 443
    elif not 0 < port < 65536:
        raise FetchError("URL has an invalid port")
    host = parts.hostname or ""
    literal: IPAddress | None = None
    if netloc.startswith("["):
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise FetchError("URL has a malformed IPv6 address") from None
        authority = f"[{literal.compressed}]"
    else:
        host = host.removesuffix(".")
        literal = _ipv4_literal(host)
        if literal is None:
            _check_host_name(host)
        authority = literal.compressed if literal is not None else host
    if literal is not None:
        host = literal.compressed
    path = parts.path or "/"
    if not path.startswith("/"):
        raise FetchError("URL is malformed")
    target = f"{path}?{parts.query}" if parts.query else path
    host_header = authority if port == 443 else f"{authority}:{port}"
    return _Target(host, literal, port, target, host_header)


def _ssl_is_verifying(context: ssl.SSLContext) -> bool:
    return context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


class _Response:
    """Incremental reading of one HTTP/1.1 response, every part bounded."""

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int) -> None:
        self.reader = reader
        self.max_bytes = max_bytes
        self.header_bytes = 0
        self.header_count = 0

    async def line(self, counted: bool = True) -> str:
        """One CRLF-terminated line; header lines also count against the header section's budget."""
        try:
            raw = await self.reader.readuntil(b"\r\n")
        except asyncio.IncompleteReadError:
            raise FetchError("connection closed before the response was complete") from None
        except asyncio.LimitOverrunError:
            raise FetchError("response header section too large") from None
        self.header_bytes += len(raw) if counted else 0
        if self.header_bytes > MAX_HEADER_BYTES:
            raise FetchError("response header section too large")
        return raw[:-2].decode("latin-1")

    async def status(self) -> int:
        match = _STATUS_LINE.match(await self.line())
        if match is None:
            raise FetchError("malformed HTTP status line")
        return int(match.group(1))

    async def fields(self, into: dict[str, list[str]]) -> None:
        """Header (or trailer) lines up to the blank line."""
        while line := await self.line():
            self.header_count += 1
            if self.header_count > MAX_HEADERS:
                raise FetchError("too many response headers")
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.match(name) or "\r" in value or "\x00" in value:
                raise FetchError("malformed response header")
            into.setdefault(name.lower(), []).append(value.strip(" \t"))

    async def body(self, headers: Mapping[str, list[str]]) -> bytes:
        encodings = headers.get("transfer-encoding")
        lengths = headers.get("content-length")
        if encodings is not None:
            if lengths is not None:
                raise FetchError("response has both Transfer-Encoding and Content-Length")
            if [e.lower() for e in encodings] != ["chunked"]:
                raise FetchError("unsupported response Transfer-Encoding")
            return await self._chunked()
        if lengths is not None:
            values = {v.strip() for item in lengths for v in item.split(",")}
            if len(values) != 1 or not (value := values.pop()).isdigit() or len(value) > 19:
                raise FetchError("malformed response Content-Length")
            length = int(value)
            if length > self.max_bytes:
                raise FetchError(f"response body larger than {self.max_bytes} bytes")
            return await self._exactly(length)
        return await self._until_close()

    async def _exactly(self, n: int) -> bytes:
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise FetchError("connection closed before the response was complete") from None

    async def _until_close(self) -> bytes:
        body = bytearray()
        while chunk := await self.reader.read(self.max_bytes + 1 - len(body)):
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(f"response body larger than {self.max_bytes} bytes")
        return bytes(body)

    async def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_text = (await self.line(counted=False)).split(";", 1)[0].strip(" \t")
            if not _CHUNK_SIZE.match(size_text):
                raise FetchError("malformed chunked response body")
            size = int(size_text, 16)
            if size == 0:
                await self.fields({})  # trailers are read, bounded, and dropped
                return bytes(body)
            if len(body) + size > self.max_bytes:
                raise FetchError(f"response body larger than {self.max_bytes} bytes")
            body += await self._exactly(size)
            if await self._exactly(2) != b"\r\n":
                raise FetchError("malformed chunked response body")


class SafeFetcher:
    """Fetches small documents over HTTPS from public addresses only; see the module docstring.

    `resolver` and `ssl_context` replace DNS and the system trust store (tests inject answers and a throwaway CA;
    an ssl_context must verify certificates and hostnames). A resolver may be async, or a plain function that
    answers at once (it runs on the event loop). `allow_addresses` is FOR TESTS ONLY: the exact IP addresses
    listed may be reached although the blocklist forbids them (say 127.0.0.1 for a local test server). Leave it
    empty in production.

    `max_connections` and `max_connections_per_host` cap open connections; at most `max_waiting_per_host`
    more fetches wait for one host (within the deadline), and any beyond are refused at once.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        connect_timeout: float = 3.0,
        total_timeout: float = 5.0,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        allow_addresses: Iterable[str] | None = None,
        pinned_hosts: Mapping[str, str] | None = None,
        resolve_timeout: float = 2.0,
        max_connections: int = 32,
        max_connections_per_host: int = 4,
        max_waiting_per_host: int = 16,
    ) -> None:
        if max_bytes <= 0 or connect_timeout <= 0 or total_timeout <= 0 or resolve_timeout <= 0:
            raise ValueError("max_bytes and the timeouts must be positive")
        if ssl_context is not None and not _ssl_is_verifying(ssl_context):
            raise ValueError("ssl_context must verify certificates and check hostnames")
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.resolve_timeout = resolve_timeout
        self._resolver: Resolver = resolver if resolver is not None else SystemResolver()
        self.slots = ConnectionSlots(max_connections, max_connections_per_host, max_waiting_per_host)
        self._ssl = ssl_context  # the system default is built on first use: loading the trust store takes a while
        self._allowed: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in allow_addresses or ())
        # Deployment setting: these host names go to these addresses, without DNS, even if the address is
        # internal. The exception belongs to the pair: another name resolving to the same address is refused.
        self._pinned: dict[str, IPAddress] = {
            host.lower(): ipaddress.ip_address(address) for host, address in (pinned_hosts or {}).items()
        }

    async def get(self, url: str) -> Fetched:
        """GET `url`; the 200 response, or FetchError for anything refused, failed, too big or too slow."""
        target = _parse_url(url)
        waiting = False
        try:
            async with asyncio.timeout(self.total_timeout):
                if target.literal is not None:
                    addresses = [target.literal]
                    if self._forbidden(target.literal):
                        raise FetchError(f"{target.host} is a forbidden address")
                elif target.host.lower() in self._pinned:
                    addresses = [self._pinned[target.host.lower()]]
                else:
                    addresses = await self._resolve(target.host)
                    if any(self._forbidden(ip) for ip in addresses):  # one bad answer spoils them all
                        raise FetchError(f"{target.host} resolves to a forbidden address")
                waiting = True
                async with self.slots.hold(target.host):
                    waiting = False
                    return await self._fetch(target, addresses, url)
        except SlotsFull:
            raise FetchError(f"too many fetches from {target.host} in progress") from None
        except TimeoutError:
            if waiting:
                raise FetchError(f"no free connection to {target.host} within {self.total_timeout:g} s") from None
            raise FetchError(f"no complete response within {self.total_timeout:g} s") from None

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        return self._ssl

    def _forbidden(self, ip: IPAddress) -> bool:
        return is_forbidden_address(ip) and ip not in self._allowed

    async def _resolve(self, host: str) -> list[IPAddress]:
        try:
            async with asyncio.timeout(self.resolve_timeout):
                answer = self._resolver(host)
                if inspect.isawaitable(answer):
                    answer = await answer
            texts = list(answer)
        except TimeoutError:
            raise FetchError(f"name lookup of {host} took longer than {self.resolve_timeout:g} s") from None
        except ResolverBusy:
            raise FetchError(f"could not resolve {host}: too many name lookups in progress") from None
        except (OSError, UnicodeError):
            raise FetchError(f"could not resolve {host}") from None
        addresses: list[IPAddress] = []
        for text in texts:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                raise FetchError(f"{host} resolves to something that is not an IP address") from None
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise FetchError(f"could not resolve {host}")
        return addresses

    async def _connect(
        self, target: _Target, addresses: list[IPAddress]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        failure = "connection failed"
        for ip in addresses:  # every one of these was checked; none is looked up again (numeric host only)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    return await asyncio.open_connection(
                        host=ip.compressed,
                        port=target.port,
                        ssl=self._ssl_context(),
                        server_hostname=target.host,
                        ssl_handshake_timeout=self.connect_timeout,
                        family=socket.AF_INET if ip.version == 4 else socket.AF_INET6,
                        flags=socket.AI_NUMERICHOST,
                        limit=MAX_HEADER_BYTES,
                    )
            except ssl.SSLCertVerificationError:
                raise FetchError(f"TLS certificate for {target.host} did not verify") from None
            except ssl.SSLError:
                raise FetchError(f"TLS handshake with {target.host} failed") from None
            except TimeoutError:
                failure = "connect timed out"
            except OSError:
                failure = "connection failed"
        raise FetchError(f"{failure} to {target.host}")

    async def _fetch(self, target: _Target, addresses: list[IPAddress], url: str) -> Fetched:
        reader, writer = await self._connect(target, addresses)
        try:
            request = (
                f"GET {target.request_target} HTTP/1.1\r\n"
                f"Host: {target.host_header}\r\n"
                "Accept: application/json\r\n"
                "Accept-Encoding: identity\r\n"
                f"User-Agent: {USER_AGENT}\r\n"
                "Connection: close\r\n"
                "\r\n"
            )
            writer.write(request.encode("ascii"))
            await writer.drain()
            response = _Response(reader, self.max_bytes)
            status = await response.status()
            if 300 <= status < 400:
                raise FetchError(f"redirect refused (status {status})")
            if status != 200:
                raise FetchError(f"unexpected status {status}")
            raw_headers: dict[str, list[str]] = {}
            await response.fields(raw_headers)
            encoding = ", ".join(raw_headers.get("content-encoding", [])).strip().lower()
            if encoding not in ("", "identity"):
                raise FetchError("unsupported response Content-Encoding")
            body = await response.body(raw_headers)
            headers = {name: ", ".join(values) for name, values in raw_headers.items()}
            return Fetched(status=status, headers=headers, body=body, url=url)
        except ssl.SSLError:
            raise FetchError(f"TLS error while reading from {target.host}") from None
        except OSError:
            raise FetchError(f"connection to {target.host} failed while reading") from None
        finally:
            writer.transport.abort()  # no lingering TLS shutdown with a peer that may never answer


def cache_seconds(headers: Mapping[str, str], default: int, maximum: int) -> int:
    """How long a response may be cached, from its Cache-Control header, within [0, maximum].

    ``no-store`` or ``no-cache`` give 0; ``max-age=N`` gives N; no header, no max-age, or a malformed one gives
    `default`. ``s-maxage`` (for shared caches) is ignored.
    """
    maximum = max(0, maximum)
    fallback = min(max(0, default), maximum)
    values = [v for k, v in headers.items() if k.lower() == "cache-control"]
    if not values:
        return fallback
    ages: set[int] = set()
    for directive in ",".join(values).split(","):
        name, sep, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            return 0
        if name != "max-age":
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not sep or not value.isascii() or not value.isdigit():
            return fallback
        ages.add(min(int(value), 2**31) if len(value) <= 10 else 2**31)  # RFC 9111: overflow means 2**31
    if len(ages) != 1:
        return fallback  # absent, or conflicting max-age directives
    return min(ages.pop(), maximum)
