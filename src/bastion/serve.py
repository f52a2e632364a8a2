"""Start a server: stdio for local clients, or uvicorn for Streamable HTTP."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from .mcp.stdio import serve_stdio as _serve_stdio
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .app import App


def configure_logging(level: str) -> None:
    # stderr only: on stdio, stdout belongs to the protocol.
    logging.basicConfig(
        stream=sys.stderr, level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def serve_stdio(app: App, settings: Settings) -> None:
    configure_logging(settings.log_level)
    server = app.server(settings)
    main = _serve_stdio(server, app.broadcaster, settings.max_body_bytes)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop wherever it runs
        asyncio.run(main)
    else:
        uvloop.run(main)


def serve_http(app: App, settings: Settings) -> None:
    import uvicorn

    from .security.http_protocol import bounded_httptools

    configure_logging(settings.log_level)
    try:
        asgi = app.asgi(settings)  # the same start-up checks whoever serves the App
    except SettingsError as exc:
        print(f"bastion: refusing to start:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.authenticated:
        sources = [issuer.issuer for issuer in settings.resource.issuers]
        if settings.authorization_server.enabled:
            sources.insert(0, "Bastion's authorization server")
        mode = f"OAuth 2.1: tokens from {', '.join(sources)}"
        if settings.authorization_server.dev_login:
            mode += "; DEV LOGIN: anyone signs in without a password"
    else:
        mode = "no authentication; loopback only" if settings.binds_loopback else "NO AUTHENTICATION (insecure)"
    print(
        f"bastion: serving {app.name!r} at http://{_url_host(settings.host)}:{settings.port}{settings.path} ({mode})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        asgi,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        # httptools, bounding each request head while it arrives: 431 before the bytes are ever buffered.
        http=bounded_httptools(settings.max_header_bytes),
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
