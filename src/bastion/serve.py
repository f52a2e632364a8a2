"""Start a server: stdio for local clients, or uvicorn for Streamable HTTP."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from .mcp.stdio import serve_stdio as _serve_stdio
from .ops.logs import FIELDS, configure_logging
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("bastion")


def serve_stdio(app: App, settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    server = app.server(settings)
    main = _serve_stdio(server, app.broadcaster, settings.max_body_bytes)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop wherever it runs
        asyncio.run(main)
    else:
        uvloop.run(main)


def serve_http(app: App, settings: Settings, *, load_app: Callable[[], App] | None = None) -> None:
    """Serve over Streamable HTTP until stopped: in this process, or in `settings.workers` processes, each loading
    the App with `load_app` (picklable: `bastion serve` gives a partial of its loader and the target) and building
    the application for itself."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        from .ops.scrape import PortTaken
        from .processes import serve_workers, with_shared_keys, workers_metrics, workers_problem

        if load_app is None:
            _refuse("--workers needs the App's file or module (bastion serve server.py --workers N)")
        if problem := workers_problem(settings):
            _refuse(problem)
        settings = with_shared_keys(settings)
        try:
            settings.check()  # every worker checks again as it builds: refuse here, once, before any starts
        except SettingsError as exc:
            _refuse(str(exc))
        listening = _bind(settings)
        try:
            with workers_metrics(settings):  # their folder, and the metrics port this parent serves for all
                _announce(app, settings, f"; {settings.workers} worker processes")
                serve_workers(load_app, settings, uvicorn_options(settings), listening)
        except PortTaken as exc:
            listening.close()
            _refuse(str(exc))
        return

    import uvicorn

    from .security.http_protocol import bounded_httptools

    try:
        asgi = app.asgi(settings)  # the same start-up checks whoever serves the App
    except SettingsError as exc:
        _refuse(str(exc))
    listening = _bind(settings)
    # httptools, bounding each request head while it arrives: 431 before the bytes are ever buffered.
    config = uvicorn.Config(asgi, http=bounded_httptools(settings.max_header_bytes), **uvicorn_options(settings))
    _announcing_server()(config, lambda: _announce(app, settings)).run(sockets=[listening])


def settle() -> None:
    """Once started: what start-up built (modules, the app, settings: about 50,000 objects) lives as long as the
    process, so it is moved out of the garbage collector's sight. A full collection then takes microseconds
    instead of about 16 ms, which were the p99 of a busy server (docs/performance.md)."""
    gc.collect()
    gc.freeze()


def _bind(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything is announced; a port in use (or an address this machine does
    not have) ends the start in one line naming it and the fix."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((settings.host, settings.port))
    except OSError as exc:
        listening.close()
        _refuse(
            f"cannot listen on {_url_host(settings.host)}:{settings.port}: {exc.strerror or exc}; choose another "
            "port (--port, or port in bastion.toml) or host (--host, or host)"
        )
    listening.set_inheritable(True)  # --workers: each worker process accepts on it
    return listening


def _announcing_server() -> type:
    import uvicorn

    class Announcing(uvicorn.Server):
        """uvicorn's server, saying where Bastion serves once it does: bound, started up, accepting."""

        def __init__(self, config: uvicorn.Config, announce: Callable[[], None]) -> None:
            super().__init__(config)
            self._announce = announce

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                settle()
                self._announce()

    return Announcing


def _refuse(problem: str) -> NoReturn:
    print(f"bastion: refusing to start:\n{problem}", file=sys.stderr)
    raise SystemExit(2)


def _announce(app: App, settings: Settings, more: str = "") -> None:
    url = f"http://{_url_host(settings.host)}:{settings.port}{settings.path}"
    mode = f"{_mode(settings)}{more}"
    # Through the log's own format (a JSON line when log_format is json), whatever the log level.
    # A bind address from a variable left in the shell is said, not silently used.
    origin = settings.where("host") or settings.where("port")
    line = f"serving {app.name!r} at {url}{origin} ({mode})"
    fields = {FIELDS: {"app": app.name, "url": url, "mode": mode}}
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, line, (), None, extra=fields))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What every process serving Bastion tells uvicorn, one process or each of --workers (but the app and the
    HTTP protocol, which each builds for itself)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,  # Bastion's own format (configure_logging), uvicorn's lines included
        "access_log": False,  # Bastion's access log (ops/access.py) says more
        "loop": "uvloop",
        "lifespan": "on",
        "server_header": False,
        "timeout_graceful_shutdown": 5,
        # X-Forwarded-For and -Proto are believed only from the configured proxies: nobody by default (uvicorn's
        # own default would believe anything sent from this machine).
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
    }


def _mode(settings: Settings) -> str:
    if settings.authenticated:
        sources = [issuer.issuer for issuer in settings.resource.issuers]
        if settings.authorization_server.enabled:
            sources.insert(0, "Bastion's authorization server")
        mode = f"OAuth 2.1: tokens from {', '.join(sources)}"
        if settings.authorization_server.dev_login:
            mode += "; DEV LOGIN: anyone signs in without a password"
        return mode
    return "no authentication; loopback only" if settings.binds_loopback else "NO AUTHENTICATION (insecure)"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
