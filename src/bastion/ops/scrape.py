"""Who may read /metrics, and the two ways it is served: a route on the MCP port (ASGI) or a port of its own.

Metrics name tools, clients' error rates and the server's load: not for the world. A scraper is let in when its
address is in `metrics.allow_from` (this machine by default) or when it sends the bearer token held in the
variable `metrics.token_env` names. Anyone else gets 401 (with a Bearer challenge) when a token would let them
in, 403 when nothing would.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..security.crypto import same

log = logging.getLogger("bastion.metrics")

Exposition = Callable[[], tuple[bytes, str]]  # the body and its content type (Metrics.exposition)
REFUSED = b"metrics: not from this address (see metrics.allow_from and metrics.token_env)\n"


class PortTaken(Exception):
    """The metrics port cannot be listened on; the message names it and the fix."""


class ScrapeRule:
    def __init__(self, allow_from: Iterable[str], token: str | None) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in allow_from]
        self.token = token

    def status(self, address: str | None, authorization: str | None) -> int:
        """200 to serve, 401 for a missing or wrong token, 403 when no token is configured."""
        if self.token is not None and authorization is not None:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() == "bearer" and same(given.strip(), self.token):
                return 200
        if address is not None:
            with contextlib.suppress(ValueError):
                ip = ipaddress.ip_address(address)
                if any(ip in network for network in self.networks):
                    return 200
        return 401 if self.token is not None else 403


def _refusal_headers(status: int) -> list[tuple[str, str]]:
    headers = [("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store")]
    if status == 401:
        headers.append(("www-authenticate", 'Bearer realm="metrics"'))
    return headers


class MetricsRoute:
    """GET `metrics.path` on the MCP port (behind the same Host and Origin checks as every other path)."""

    def __init__(self, exposition: Exposition, rule: ScrapeRule) -> None:
        self.exposition = exposition
        self.rule = rule

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Only GET and HEAD reach here: the route answers other methods 405 (compose.py).
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        client = scope.get("client")
        status = self.rule.status(client[0] if client else None, authorization)
        if status != 200:
            await _answer(send, status, _refusal_headers(status), REFUSED)
            return
        body, content_type = self.exposition()
        await _answer(send, 200, [("content-type", content_type), ("cache-control", "no-store")], body)


async def _answer(send: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class MetricsPort:
    """`metrics.port`: metrics alone on a port of their own, served by a thread (every path answers them)."""

    def __init__(self, host: str, port: int, exposition: Exposition, rule: ScrapeRule) -> None:
        self.host, self.port = host, port
        self.exposition = exposition
        self.rule = rule
        self._server: WSGIServer | None = None

    def start(self) -> None:
        """Bind and serve; PortTaken when the port cannot be had."""
        server_class = _Threading6 if ":" in self.host else _Threading
        try:
            self._server = make_server(self.host, self.port, self._app, server_class, _Quiet)
        except OSError as exc:
            raise PortTaken(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}; choose another metrics.port"
            ) from None
        threading.Thread(target=self._server.serve_forever, name="bastion-metrics", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("allow", "GET, HEAD"), ("content-type", "text/plain")])
            return [b"GET only\n"]
        status = self.rule.status(environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION"))
        if status != 200:
            start_response("401 Unauthorized" if status == 401 else "403 Forbidden", _refusal_headers(status))
            return [REFUSED]
        body, content_type = self.exposition()
        start_response("200 OK", [("content-type", content_type), ("cache-control", "no-store")])
        return [body]


class _Threading(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Threading6(_Threading):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes come every few seconds: not one stderr line each."""
