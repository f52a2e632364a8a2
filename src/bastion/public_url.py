"""Where clients reach this server: the base of the issuer and resource identifiers.

A configured `public_url` is used as is. Without one (allowed only on loopback), the request's Host header is
used: the origin gate has already refused any Host that is not a loopback name or an allowed host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def well_known(base: str, name: str, suffix: str = "") -> str:
    """RFC 8414 / RFC 9728 placement: the well-known segment goes between the host and the base's own path."""
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/.well-known/{name}{parts.path}{suffix}"


def base_path(configured: str | None) -> str:
    """The path part of a configured public URL ('' when there is none)."""
    return urlsplit(configured).path.rstrip("/") if configured else ""


def base_url(scope: Mapping[str, Any], configured: str | None) -> str:
    if configured:
        return configured
    return base_url_for_host(next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None), None)


def base_url_for_host(host: str | None, configured: str | None) -> str:
    """The same, from a Host header value already in hand."""
    return configured or f"http://{host or '127.0.0.1'}"
