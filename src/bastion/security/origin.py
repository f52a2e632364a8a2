"""DNS-rebinding protection: the Host and Origin headers of every HTTP request are checked.

A page on evil.example can make a browser send requests to a server on 127.0.0.1 by pointing its own name at
127.0.0.1; the Host header then says evil.example, and the Origin header names the attacking page.

Both headers are parsed strictly, as a browser writes them, before any name is compared: a lenient parse lets a
value whose host part merely looks right through (`https://localhost:3000@evil.example`, a comma-joined list,
`localhost:x`). Origin must be RFC 6454's serialization, scheme "://" host [":" port] with the port in digits
only when it is not the scheme's default; Host is RFC 9110's host [":" port]. Either is ASCII, lower-cased
before comparison; several of either is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# A DNS name or IPv4 address, or a bracketed IPv6 address; then an optional port of 1-5 digits, no leading zero.
_HOST = r"(\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?)"
_PORT = r"(?::([1-9][0-9]{0,4}))?"
_HOST_HEADER = re.compile(_HOST + _PORT)
_ORIGIN = re.compile(r"(https?)://" + _HOST + _PORT)


class Authority(NamedTuple):
    host: str  # lower case; IPv6 in brackets
    port: int | None  # None when absent


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int | None  # None for the scheme's default port

    def serialize(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port is not None else "")


def _port(digits: str | None) -> int | None:
    """The port, None when absent; ValueError when out of range."""
    if digits is None:
        return None
    port = int(digits)
    if port > 65535:
        raise ValueError(digits)
    return port


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
    return True


def parse_host(value: str) -> Authority | None:
    """A Host header value as RFC 9110 allows it, or None."""
    value = value.strip(" \t")
    if not value.isascii():
        return None
    match = _HOST_HEADER.fullmatch(value.lower())
    if match is None or not _valid_host(match[1]):
        return None
    try:
        return Authority(match[1], _port(match[2]))
    except ValueError:
        return None


def parse_origin(value: str, *, strict: bool = True) -> Origin | None:
    """An Origin header value as a browser serializes it (RFC 6454), or None. `strict=False` also takes the
    scheme's default port spelled out (for configured origins), and drops it."""
    value = value.strip(" \t")
    if not value.isascii():
        return None
    match = _ORIGIN.fullmatch(value.lower())
    if match is None or not _valid_host(match[2]):
        return None
    scheme, host = match[1], match[2]
    try:
        port = _port(match[3])
    except ValueError:
        return None
    if port == DEFAULT_PORTS[scheme]:
        if strict:
            return None  # a browser never writes the default port
        port = None
    return Origin(scheme, host, port)


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which Host and Origin values a server accepts."""

    allowed_hosts: frozenset[str]  # lower-case names, with or without :port
    allowed_origins: frozenset[str]  # serialized origins (default ports dropped)
    allow_loopback: bool
    # The scheme browsers use to reach this server (public_url's), when it is known: a page served over the
    # other scheme on the same host (plain http, which any network attacker can write) is another origin.
    scheme: str | None = None

    @classmethod
    def build(
        cls, hosts: Iterable[str], origins: Iterable[str], allow_loopback: bool, scheme: str | None = None
    ) -> OriginPolicy:
        serialized = set()
        for configured in origins:
            origin = parse_origin(configured.strip().rstrip("/"), strict=False)
            if origin is not None:  # one that cannot parse could never match what a browser sends
                serialized.add(origin.serialize())
        return cls(frozenset(h.strip().lower() for h in hosts), frozenset(serialized), allow_loopback, scheme)

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        return _host_allowed(self, host_header)

    def _check_host(self, host_header: str) -> bool:
        authority = parse_host(host_header)
        if authority is None:
            return False
        if self.allow_loopback and authority.host in LOOPBACK_NAMES:
            return True
        spelled = authority.host + (f":{authority.port}" if authority.port is not None else "")
        return authority.host in self.allowed_hosts or spelled in self.allowed_hosts

    def origin_allowed(
        self, origin_header: str | None, host_header: str | None, request_scheme: str | None = None
    ) -> bool:
        """No Origin (not a browser) is fine; otherwise it must be loopback, listed, or this very server: same
        host, port and scheme (public_url's scheme when configured, else the scheme the request came in on)."""
        if origin_header is None:
            return True
        origin = parse_origin(origin_header)
        if origin is None:
            return False
        if origin.serialize() in self.allowed_origins:
            return True
        if self.allow_loopback and origin.host in LOOPBACK_NAMES:
            return True
        # Same origin as the server the browser addressed, when that name is itself allowed.
        authority = parse_host(host_header) if host_header else None
        if authority is None or not self.host_allowed(host_header):
            return False
        scheme = self.scheme or request_scheme
        if scheme is not None and origin.scheme != scheme:
            return False
        default = DEFAULT_PORTS[origin.scheme]
        return origin.host == authority.host and (origin.port or default) == (authority.port or default)


@lru_cache(maxsize=256)
def _host_allowed(policy: OriginPolicy, host_header: str) -> bool:
    # Every request asks about the same few Host values; remember the answers.
    return policy._check_host(host_header)


class OriginGate:
    """ASGI middleware: refuse any HTTP request whose Host (400 when it is missing, repeated or malformed, as
    RFC 9112 section 3.2 asks; 403 when it is another name) or Origin (403) the policy does not accept."""

    def __init__(self, app: Any, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope["headers"], scope.get("scheme"))
            if refusal is not None:
                status, reason = refusal
                body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"' + reason.encode() + b'"}}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: list[tuple[bytes, bytes]], scheme: str | None = None) -> tuple[int, str] | None:
        """(status, reason) to refuse with, or None to let the request through."""
        # One pass over the headers: this runs on every request.
        host = origin = fetch_site = None
        hosts = origins = sites = 0
        for name, value in headers:
            if name == b"host":
                hosts += 1
                host = host if host is not None else value
            elif name == b"origin":
                origins += 1
                origin = origin if origin is not None else value
            elif name == b"sec-fetch-site":
                sites += 1
                fetch_site = value
        if hosts != 1 or host is None:
            return BAD_HOST
        if origins > 1:
            return BAD_ORIGIN
        return _refusal(self.policy, host, origin, fetch_site if sites == 1 else None, scheme)


BAD_HOST = (400, "Bad Request: exactly one well-formed Host header is required")
OTHER_HOST = (403, "Forbidden: Host header not allowed (DNS rebinding protection)")
BAD_ORIGIN = (403, "Forbidden: Origin not allowed")


@lru_cache(maxsize=1024)
def _refusal(
    policy: OriginPolicy, host_value: bytes, origin_value: bytes | None, fetch_site: bytes | None, scheme: str | None
) -> tuple[int, str] | None:
    # Requests repeat the same few (Host, Origin) pairs: the verdict is remembered, bounded in number.
    host = host_value.decode("latin-1")
    if parse_host(host) is None:
        return BAD_HOST
    if not policy.host_allowed(host):
        return OTHER_HOST
    origin = origin_value.decode("latin-1") if origin_value is not None else None
    # A page sent with Referrer-Policy: no-referrer makes the browser say "Origin: null" on its own form
    # posts; the browser's Sec-Fetch-Site (which pages cannot forge) tells us it is same-origin.
    if origin == "null" and fetch_site == b"same-origin":
        origin = None
    if not policy.origin_allowed(origin, host, scheme):
        return BAD_ORIGIN
    return None
