"""Where clients reach this server: the base of the issuer and resource identifiers.

A configured `public_url` is used as is. Without one (allowed only on loopback), the request's Host header is
used: the origin gate has already refused any Host that is not a loopback name or an allowed host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def base_url(scope: Mapping[str, Any], configured: str | None) -> str:
    if configured:
        return configured
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "127.0.0.1")
    return f"http://{host}"
