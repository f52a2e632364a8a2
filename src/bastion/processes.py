"""`bastion serve --workers N`: N processes on one machine, sharing one listening socket.

uvicorn's supervisor starts the workers (a fresh interpreter each, spawned) and replaces any that dies. Each
worker receives, pickled, a WorkerConfig holding how to load the App (a function and the target it names, as
`bastion serve` was given it: tools are code, so every worker imports them) and the Settings the parent
checked, and builds its own application from them: its own store connections and its own bounded HTTP
protocol. Nothing secret passes through the environment.

Every worker must sign and check with the same keys: a client's next request, or its approval cookie, may reach
another worker. Keys the settings leave unset are drawn once here, in the parent, for all of them (they last
as long as this run, as a single process's do).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from pydantic import SecretStr

from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .app import App

AppLoader = Callable[[], "App"]  # picklable: a module-level function, or a partial of one


def workers_problem(settings: Settings) -> str | None:
    """Why these settings cannot be served by `settings.workers` processes, in one line; None when they can."""
    workers = settings.workers
    if workers > 1 and settings.store.backend == "memory":
        if settings.authorization_server.enabled:
            kept = "grants, clients and codes, and refuse the tokens the others issued"
        elif settings.stateful:
            kept = "sessions, and answer 404 to a session's requests that reach another"
        else:
            return None
        return (
            f"--workers {workers} with store.backend = 'memory': each worker would keep its own {kept}. Use "
            "backend = 'sqlite' (one machine) or 'postgres' / 'redis'"
        )
    return None


def with_shared_keys(settings: Settings) -> Settings:
    """The settings every worker gets: state_secret and cookie_secret set, drawn now if the settings left them
    unset (a random key per process would make one worker refuse what another signed)."""
    server = settings.authorization_server
    cookie = server.cookie_secret or SecretStr(secrets.token_urlsafe(32))
    return settings.model_copy(
        update={
            "state_secret": settings.state_secret or SecretStr(secrets.token_urlsafe(32)),
            "authorization_server": server.model_copy(update={"cookie_secret": cookie}),
        }
    )


class WorkerConfig(uvicorn.Config):
    """uvicorn's configuration, pickled into each worker, where `load` builds Bastion's application."""

    def __init__(self, load_app: AppLoader, settings: Settings, **options: Any) -> None:
        self.make_app = load_app
        self.settings = settings
        # The application and protocol are made in the worker (load): neither can be pickled.
        super().__init__(app="bastion (built in each worker)", http="httptools", **options)

    def load(self) -> None:
        from .ops.logs import configure_logging
        from .security.http_protocol import bounded_httptools
        from .serve import settle

        configure_logging(self.settings.log_level, self.settings.log_format)
        try:
            self.app = self.make_app().asgi(self.settings)
        except SettingsError as exc:
            print(f"bastion: refusing to start:\n{exc}", file=sys.stderr, flush=True)
            # uvicorn's supervisor stops on this status instead of starting the worker again and again.
            raise SystemExit(uvicorn.config.STARTUP_FAILURE) from None
        # httptools, bounding each request head while it arrives, in every worker as in a single process.
        self.http = bounded_httptools(self.settings.max_header_bytes)
        super().load()
        settle()  # the application is built: what start-up made lives on, out of the collector's sight


def serve_workers(load_app: AppLoader, settings: Settings, options: dict[str, Any], listening: socket.socket) -> None:
    """Serve with `settings.workers` processes (given their shared keys: `with_shared_keys`), each accepting on
    `listening`, until stopped (SIGINT or SIGTERM to this parent stops them all)."""
    from uvicorn.supervisors import Multiprocess

    config = WorkerConfig(load_app, settings, workers=settings.workers, **options)
    try:
        Multiprocess(config, sockets=[listening]).run()
    finally:
        listening.close()


@contextlib.contextmanager
def workers_metrics(settings: Settings) -> Iterator[None]:
    """With metrics on, the workers write their values in one folder made for this run (prometheus_client's
    multiprocess mode: each worker, spawned, reads where from the environment), and a scrape of any of them adds
    all of them up. The metrics port, if any, is this parent's: one process listens on it, for every worker
    (PortTaken when it cannot be had)."""
    if not settings.metrics.enabled:
        yield
        return
    from .ops.metrics import MULTIPROCESS, Metrics
    from .ops.scrape import MetricsPort, ScrapeRule

    with tempfile.TemporaryDirectory(prefix="bastion-metrics-") as folder:
        os.environ[MULTIPROCESS] = folder
        port = None
        try:
            configured = settings.metrics
            if configured.port is not None:
                rule = ScrapeRule(configured.allow_from, configured.token())
                port = MetricsPort(configured.host, configured.port, Metrics.every_worker, rule)
                port.start()
            yield
        finally:
            if port is not None:
                port.stop()
            os.environ.pop(MULTIPROCESS, None)
