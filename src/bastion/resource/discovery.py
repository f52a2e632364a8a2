"""An external authorization server's metadata (RFC 8414, or OpenID Connect discovery), fetched and checked.

The issuer is configured by the operator, so its URLs are trusted to point where they point; what is checked is
that the document describes exactly that issuer, and that every answer stays small and quick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from ..settings import https_url

MAX_DOCUMENT_BYTES = 256 * 1024
TIMEOUT = httpx.Timeout(5.0, connect=3.0)
METADATA_SECONDS = 3600.0
RETRY_SECONDS = 10.0  # after a failure, the next request may try again this soon


class IssuerUnavailable(Exception):
    """The issuer (or its keys or introspection) could not be reached or answered nonsense: try again later."""


async def fetch_json(http: httpx.AsyncClient, request: httpx.Request) -> tuple[int, Any]:
    """(status, parsed JSON body or None), reading at most MAX_DOCUMENT_BYTES; never follows redirects."""
    # Uncompressed only: the cap then bounds memory too (a small gzip body can inflate a thousandfold).
    request.headers["Accept-Encoding"] = "identity"
    try:
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise IssuerUnavailable(f"{request.url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(f"{request.url} could not be reached ({type(exc).__name__})") from None
    try:
        return response.status_code, orjson.loads(body)
    except orjson.JSONDecodeError:
        return response.status_code, None


def metadata_urls(issuer: str) -> list[str]:
    """Where the metadata may be, in the order MCP clients try them (RFC 8414 first, then OIDC discovery)."""
    parts = urlsplit(issuer)
    root = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return [f"{root}/.well-known/oauth-authorization-server", f"{root}/.well-known/openid-configuration"]
    return [
        f"{root}/.well-known/oauth-authorization-server{path}",
        f"{root}/.well-known/openid-configuration{path}",
        f"{root}{path}/.well-known/openid-configuration",
    ]


class Metadata:
    """The issuer's metadata, fetched on first use and kept for an hour; a failed fetch is retried soon after."""

    def __init__(self, issuer: str, http: httpx.AsyncClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self.http = http
        self._clock = clock  # paces refetches (tests drive it)
        self._document: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._failed_at = -RETRY_SECONDS
        self._lock = asyncio.Lock()  # requests arriving together share one fetch

    async def get(self) -> dict[str, Any]:
        if self._document is not None and self._clock() - self._fetched_at < METADATA_SECONDS:
            return self._document
        async with self._lock:
            return await self._fresh()

    async def _fresh(self) -> dict[str, Any]:
        now = self._clock()
        if self._document is not None and now - self._fetched_at < METADATA_SECONDS:
            return self._document
        if now - self._failed_at < RETRY_SECONDS:
            if self._document is not None:
                return self._document  # stale beats nothing while the issuer is down
            raise IssuerUnavailable(f"{self.issuer} metadata is unavailable")
        try:
            self._document = await self._discover()
            self._fetched_at = now
        except IssuerUnavailable:
            self._failed_at = now
            if self._document is None:
                raise
        return self._document

    async def _discover(self) -> dict[str, Any]:
        for url in metadata_urls(self.issuer):
            status, document = await fetch_json(self.http, self.http.build_request("GET", url))
            if status != 200 or not isinstance(document, dict):
                continue
            # RFC 8414 section 3.3: the document must name the issuer it was fetched for, character for character
            # (a trailing slash may be configured or not; the document's own spelling is what tokens carry).
            named = document.get("issuer")
            if not isinstance(named, str) or named.rstrip("/") != self.issuer.rstrip("/"):
                raise IssuerUnavailable(f"{url} describes another issuer")
            for endpoint in ("jwks_uri", "introspection_endpoint"):
                value = document.get(endpoint)
                if value is not None and (not isinstance(value, str) or not _acceptable(value)):
                    raise IssuerUnavailable(f"{url} has an unusable {endpoint}")
            return document
        raise IssuerUnavailable(f"no authorization server metadata found for {self.issuer}")


def _acceptable(url: str) -> bool:
    try:
        https_url(url)
    except ValueError:
        return False
    return True
