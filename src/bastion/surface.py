"""The whole HTTP surface as one ASGI application: where each request goes, and the server's lifespan.

Requests: the MCP endpoint (behind authentication when it is on) at its paths, a health check, and every other
route (authorization server, metadata, worker API) through one router. All of them sit behind the same guards,
outermost first: the bound on request heads (431), then the Host and Origin checks.

Lifespan: start-up checks run before the server takes a request; one that fails is reported to the ASGI
server (which then refuses to start) in a line that names it. At shutdown everything opened is closed, in
order, each close guarded so that one failure does not leave the rest open.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .public_url import route_path

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("bastion")

Step = tuple[str, Callable[[], Awaitable[None]]]  # (what it is, for the log; what to run)
Guard = Callable[[Any], Any]  # an ASGI middleware's constructor: app -> app


class Lifecycle:
    def __init__(self, startup: Sequence[Step] = (), shutdown: Sequence[Step] = ()) -> None:
        self.startup = list(startup)
        self.shutdown = list(shutdown)

    async def start(self) -> None:
        for name, check in self.startup:
            try:
                await check()
            except Exception as exc:
                raise StartupError(f"{name}: {_one_line(exc)}") from exc

    async def stop(self) -> None:
        for name, close in self.shutdown:
            try:
                await close()
            except Exception:
                log.exception("closing %s failed", name)


class StartupError(Exception):
    """A start-up check failed; the message names it."""


class Surface:
    def __init__(
        self,
        mcp: Any,
        mcp_paths: set[str],
        router: Any,
        guards: Sequence[Guard],
        lifecycle: Lifecycle,
        store: Store | None = None,
    ) -> None:
        self.mcp = mcp
        self.mcp_paths = mcp_paths  # none when only the worker API is served
        self.router = router
        self.lifecycle = lifecycle
        self.store = store  # the authorization server's, when it runs (for operators' tools and tests)
        http: Any = self._route
        for guard in reversed(guards):  # the first guard listed is the outermost
            http = guard(http)
        self._http = http

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Start and stop with the application this one is mounted in, which does not pass lifespan events on
        to what it mounts: `Starlette(routes=[Mount("/tools", app=surface)], lifespan=surface.lifespan)`."""
        try:
            await self.lifecycle.start()
        except StartupError:
            await self.lifecycle.stop()
            raise
        try:
            yield
        finally:
            await self.lifecycle.stop()

    async def _route(self, scope: Any, receive: Any, send: Any) -> None:
        path = route_path(scope)
        if path in self.mcp_paths:
            await self.mcp(scope, receive, send)
        elif path == "/healthz" and scope["method"] == "GET":
            await _plain(send, 200, b'{"status":"ok"}')
        elif root := scope.get("root_path", "").encode("latin-1"):
            await self.router(scope, receive, _under(root, send))
        else:
            await self.router(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.lifecycle.start()
                except StartupError as exc:
                    log.error("bastion: refusing to start: %s", exc)
                    await self.lifecycle.stop()
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.lifecycle.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _under(root: bytes, send: Any) -> Any:
    """Mounted at `root`: the redirects the pages send to this server's own paths go on under it."""

    async def rooted(message: Any) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [
                (name, root + value if name.lower() == b"location" and _own_path(value) else value)
                for name, value in message.get("headers", [])
            ]
        await send(message)

    return rooted


def _own_path(location: bytes) -> bool:
    return location[:1] == b"/" and location[1:2] != b"/"  # "/consent", not "//elsewhere" nor "https://..."


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
