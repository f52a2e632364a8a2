"""DNS-rebinding protection: the Host and Origin headers of every HTTP request are checked.

A page on evil.example can make a browser send requests to a server on 127.0.0.1 by pointing its own name at
127.0.0.1; the Host header then says evil.example, and the Origin header names the attacking page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


def _split_host(value: str) -> tuple[str, str | None]:
    """('example.com', '443') from 'example.com:443'; IPv6 stays bracketed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        host, rest = value[: end + 1], value[end + 1 :]
        return host, rest[1:] if rest.startswith(":") else None
    host, sep, port = value.partition(":")
    return host, port if sep else None


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """Which Host and Origin values a server accepts."""

    allowed_hosts: frozenset[str]  # lower-case names, with or without :port
    allowed_origins: frozenset[str]  # lower-case scheme://host[:port]
    allow_loopback: bool

    @classmethod
    def build(cls, hosts: Iterable[str], origins: Iterable[str], allow_loopback: bool) -> OriginPolicy:
        return cls(
            frozenset(h.strip().lower() for h in hosts),
            frozenset(o.strip().lower().rstrip("/") for o in origins),
            allow_loopback,
        )

    def host_allowed(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        return _host_allowed(self, host_header)

    def _check_host(self, host_header: str) -> bool:
        value = host_header.strip().lower()
        name, _port = _split_host(value)
        if self.allow_loopback and name in LOOPBACK_NAMES:
            return True
        return value in self.allowed_hosts or name in self.allowed_hosts

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """No Origin (not a browser) is fine; otherwise it must be loopback, listed, or this very server."""
        if origin is None:
            return True
        origin = origin.strip().lower().rstrip("/")
        if origin in self.allowed_origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        name, _port = _split_host(parts.netloc)
        if self.allow_loopback and name in LOOPBACK_NAMES:
            return True
        # Same origin as the server the browser addressed, when that name is itself allowed.
        if not host_header:
            return False
        return parts.netloc == host_header.strip().lower() and self.host_allowed(host_header)


@lru_cache(maxsize=256)
def _host_allowed(policy: OriginPolicy, host_header: str) -> bool:
    # Every request asks about the same few Host values; remember the answers.
    return policy._check_host(host_header)


class OriginGate:
    """ASGI middleware: refuse (403) any HTTP request whose Host or Origin the policy does not accept."""

    def __init__(self, app: Any, policy: OriginPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = origin = fetch_site = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                elif name == b"origin":
                    origin = value.decode("latin-1")
                elif name == b"sec-fetch-site":
                    fetch_site = value.decode("latin-1")
            # A page sent with Referrer-Policy: no-referrer makes the browser say "Origin: null" on its own
            # form posts; the browser's Sec-Fetch-Site (which pages cannot forge) tells us it is same-origin.
            if origin == "null" and fetch_site == "same-origin":
                origin = None
            reason = None
            if not self.policy.host_allowed(host):
                reason = "Host header not allowed (DNS rebinding protection)"
            elif not self.policy.origin_allowed(origin, host):
                reason = "Origin not allowed"
            if reason is not None:
                body = (
                    b'{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Forbidden: '
                    + reason.encode()
                    + b'"}}'
                )
                await send(
                    {"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
