"""Where clients reach this server: the base of the issuer and resource identifiers.

A configured `public_url` is used as is. Without one (allowed only on loopback), the request's Host header is
used: the origin gate has already refused any Host that is not a loopback name or an allowed host.

Mounted under a path in another ASGI application (Starlette's `Mount("/tools", app=...)`, FastAPI's `mount`), the
server's URLs go on from that path (the ASGI scope's `root_path`), added to the public URL unless it already ends
with it (a proxy that strips the prefix and says so with uvicorn's --root-path).
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
    host = None if configured else next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
    return base_url_for_host(host, configured, scope.get("root_path", ""))


def base_url_for_host(host: str | None, configured: str | None, root: str = "") -> str:
    """The same, from a Host header value and the mount path (`root_path`) already in hand."""
    base = configured or f"http://{host or '127.0.0.1'}"
    if root and not base_path(base).endswith(root):
        base += root
    return base


def route_path(scope: Mapping[str, Any]) -> str:
    """The request's path within this server: without the path it is mounted at, if it is."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def local(scope: Mapping[str, Any], path: str) -> str:
    """A path of this server as a browser must ask for it (under the mount path, if mounted)."""
    root: str = scope.get("root_path", "")
    return root + path


def metadata_url(base: str, resource_path: str, root: str = "") -> str:
    """Where the protected resource metadata of `base` + `resource_path` is: at the well-known place (RFC 9728),
    or, for a server mounted at `root`, under that path (the host's own well-known URLs belong to the application
    it is mounted in): clients follow the URL the challenge names."""
    if root:
        return f"{base}/.well-known/oauth-protected-resource{resource_path}"
    return well_known(base, "oauth-protected-resource", resource_path)
