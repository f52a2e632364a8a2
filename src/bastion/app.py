"""App: register tools, resources and prompts, then serve them over stdio or Streamable HTTP."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlsplit

from starlette.routing import BaseRoute, Router

from .mcp.http import StreamableHTTP
from .mcp.notify import Broadcaster
from .mcp.policy import Policy
from .mcp.registry import Registry
from .mcp.server import Server
from .mcp.session import SessionTable
from .secrets import SecretSource
from .security.limits import HeaderLimit
from .security.origin import OriginGate, OriginPolicy
from .settings import Settings

if TYPE_CHECKING:
    from .store import Store

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("bastion")


class App:
    """An MCP server: decorate functions to offer them, then `run()` it or `bastion serve` it."""

    def __init__(self, name: str, version: str = "0.1.0", instructions: str | None = None) -> None:
        self.name = name
        self.version = version
        self.instructions = instructions
        self.registry = Registry()
        self.broadcaster = Broadcaster()

    # --- registration -------------------------------------------------------------------------------
    @overload
    def tool(self, fn: F) -> F: ...
    @overload
    def tool(self, fn: None = None, **options: Any) -> Callable[[F], F]: ...

    def tool(self, fn: F | None = None, **options: Any) -> F | Callable[[F], F]:
        """Offer a function as a tool. Options: name, title, description, annotations, scopes (needed to see
        and call it), requires_secrets, requires_upstream, upstream_scopes, input_schema, structured_output,
        meta, icons."""

        def register(func: F) -> F:
            self.registry.add_tool(func, **options)
            self._changed("tools")
            return func

        return register(fn) if fn is not None else register

    def resource(self, uri: str, **options: Any) -> Callable[[F], F]:
        """Offer a function's return value as a resource; `{name}` parts of the URI make it a template.
        Options: name, title, description, mime_type."""

        def register(func: F) -> F:
            self.registry.add_resource(func, uri, **options)
            self._changed("resources")
            return func

        return register

    @overload
    def prompt(self, fn: F) -> F: ...
    @overload
    def prompt(self, fn: None = None, **options: Any) -> Callable[[F], F]: ...

    def prompt(self, fn: F | None = None, **options: Any) -> F | Callable[[F], F]:
        """Offer a prompt template; its parameters are the prompt's arguments. Options: name, title,
        description."""

        def register(func: F) -> F:
            self.registry.add_prompt(func, **options)
            self._changed("prompts")
            return func

        return register(fn) if fn is not None else register

    def completion(self, *, argument: str, prompt: str | None = None, resource: str | None = None) -> Callable[[F], F]:
        """Suggest values for a prompt's or resource template's argument: fn(value, context) -> [str]."""
        if (prompt is None) == (resource is None):
            raise ValueError("completion needs exactly one of prompt= or resource=")
        key = ("ref/prompt", prompt, argument) if prompt else ("ref/resource", str(resource), argument)

        def register(func: F) -> F:
            self.registry.completers[key] = func
            return func

        return register

    def remove_tool(self, name: str) -> None:
        del self.registry.tools[name]
        self._changed("tools")

    # --- notifications --------------------------------------------------------------------------------
    def _changed(self, kind: str) -> None:
        """Tell listening clients a list changed, when registration happens while serving."""
        self.broadcaster.list_changed_soon(kind)

    async def notify_resource_updated(self, uri: str) -> None:
        """Tell clients subscribed to `uri` that its contents changed."""
        await self.broadcaster.resource_updated(uri)

    async def notify_list_changed(self, kind: str) -> None:
        """kind is "tools", "resources" or "prompts"."""
        await self.broadcaster.list_changed(kind)

    # --- serving ----------------------------------------------------------------------------------------
    def server(self, settings: Settings) -> Server:
        state_key = settings.state_secret.get_secret_value().encode() if settings.state_secret else None
        return Server(
            self.registry,
            name=self.name,
            version=self.version,
            instructions=self.instructions,
            secrets=SecretSource(settings.env_file),
            tool_timeout=settings.tool_timeout_seconds,
            mask_error_details=settings.mask_error_details,
            state_key=state_key,
            tool_threads=settings.tool_threads,
            policy=self.policy(settings),
        )

    def policy(self, settings: Settings) -> Policy:
        return Policy(settings.policy.tools, settings.policy.resources, settings.policy.prompts)

    def scopes(self, settings: Settings) -> list[str]:
        """Every scope this server uses (scopes_supported): the authorization server's own list when it runs, the
        scopes every caller needs, and all that tools, resources, prompts and the policy need."""
        needed = set(settings.resource.required_scopes) | self.policy(settings).every_scope()
        if settings.authorization_server.enabled:
            needed.update(settings.authorization_server.scopes)
        for entries in (self.registry.tools, self.registry.resources, self.registry.templates, self.registry.prompts):
            for entry in entries.values():
                needed.update(entry.scopes)
        return sorted(needed)

    def asgi(self, settings: Settings | None = None) -> OriginGate:
        """The ASGI application serving this App at settings.path (for uvicorn or any ASGI server).

        Runs the same start-up checks as `bastion serve` (SettingsError with the same message), so that an ASGI
        server of your own cannot start what `serve` refuses."""
        settings = settings or Settings.load()
        settings.check()
        hosts, origins_allowed = list(settings.allowed_hosts), list(settings.allowed_origins)
        if settings.public_url:
            public = urlsplit(settings.public_url)
            hosts.append(public.netloc)
            origins_allowed.append(f"{public.scheme}://{public.netloc}")
        origins = OriginPolicy.build(hosts, origins_allowed, settings.binds_loopback)
        server = self.server(settings)
        endpoint = StreamableHTTP(
            server,
            self.broadcaster,
            max_body_bytes=settings.max_body_bytes,
            stateful=settings.stateful,
            json_response=settings.json_response,
            sessions=SessionTable(settings.max_sessions, settings.session_idle_seconds),
        )
        mcp: Any = endpoint
        routes: list[BaseRoute] = []
        shutdown: list[Callable[[], Awaitable[None]]] = []
        store = None
        if settings.authenticated and not settings.worker.only:
            mcp, store = self._protect(endpoint, settings, routes, shutdown)
        if settings.worker.secret_env:
            from .worker.api import WorkerAPI

            worker = WorkerAPI(
                server,
                settings.worker.secret() or "",
                settings.worker.max_token_seconds,
                require_exp=not settings.worker.allow_tokens_without_exp,
            )
            routes += worker.routes()
        paths = set() if settings.worker.only else {settings.path, settings.path + "/"}
        surface = ASGIApp(mcp, endpoint, paths, Router(routes), store, shutdown, settings.max_header_bytes)
        return OriginGate(surface, origins)

    def _protect(
        self,
        endpoint: StreamableHTTP,
        settings: Settings,
        routes: list[BaseRoute],
        shutdown: list[Callable[[], Awaitable[None]]],
    ) -> tuple[Any, Store | None]:
        """Put the MCP endpoint behind a bearer gate taking tokens from Bastion's own authorization server, from
        external issuers, or both; add their routes. Imported only when used: an unauthenticated server never
        loads the OAuth stack or its crypto."""
        from .resource import metadata as resource_metadata
        from .resource.bearer import BearerGate
        from .resource.tokens import TokenVerifier

        authorization, store = None, None
        if settings.authorization_server.enabled:
            from .identity.dev import DevLogin
            from .oauth.server import AuthorizationServer
            from .store import open_store

            store = open_store(settings.store.backend, settings.store.path)
            shutdown.append(store.close)
            offered = settings.authorization_server.model_copy(update={"scopes": self.scopes(settings)})
            authorization = AuthorizationServer(offered, store, settings.public_url, settings.path)
            if settings.authorization_server.dev_login:
                authorization.add_authenticator(DevLogin(authorization))
            for upstream in settings.authorization_server.upstream:
                from .identity import upstream_provider
                from .identity.login import UpstreamLogin

                authorization.add_authenticator(
                    UpstreamLogin(authorization, upstream_provider(upstream), upstream.button_label())
                )
            routes += authorization.routes()
        issuers = []
        if settings.resource.issuers:
            import httpx

            from .resource.discovery import TIMEOUT
            from .resource.issuer import ExternalIssuer

            http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
            shutdown.append(http.aclose)
            issuers = [ExternalIssuer(issuer, http) for issuer in settings.resource.issuers]
        verify = TokenVerifier(authorization.grants.verify if authorization else None, issuers)
        gate = BearerGate(
            endpoint, verify, settings.public_url, settings.path, tuple(settings.resource.required_scopes)
        )
        if authorization is not None:
            authorization.grants.on_revoke.append(gate.forget)
        endpoint.challenge = gate.challenge

        def servers(base: str) -> list[str]:
            # Bastion's own authorization server first: clients that pick one pick the first.
            return ([base] if authorization is not None else []) + [issuer.issuer for issuer in issuers]

        routes += resource_metadata.routes(settings.public_url, settings.path, servers, self.scopes(settings))
        return gate, store

    def run(self, transport: str = "stdio", **settings: Any) -> None:
        """Serve: "stdio" (the default, for local clients) or "http" (Streamable HTTP)."""
        from .serve import serve_http, serve_stdio

        loaded = Settings.load(**settings)
        if transport == "stdio":
            serve_stdio(self, loaded)
        elif transport == "http":
            serve_http(self, loaded)
        else:
            print(f"unknown transport {transport!r}: use 'stdio' or 'http'", file=sys.stderr)
            raise SystemExit(2)


Scope = MutableMapping[str, Any]


class ASGIApp:
    """The whole HTTP surface: the MCP endpoint (behind authentication when it is on), a health check, and
    the authorization server's routes."""

    def __init__(
        self,
        mcp: Any,
        endpoint: StreamableHTTP,
        paths: set[str],
        router: Router,
        store: Store | None,
        shutdown: list[Callable[[], Awaitable[None]]],
        max_header_bytes: int,
    ) -> None:
        # Every route sits behind the bound on request heads (431), for ASGI servers that do not bound them.
        self._http = HeaderLimit(self._route, max_header_bytes)
        self.mcp = mcp
        self.endpoint = endpoint
        self.paths = paths  # where MCP is served (none when only the worker API is)
        self.router = router
        self.store = store  # Bastion's own authorization server's, when it runs
        self.shutdown = shutdown  # what to close when the server stops (the store, HTTP clients)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _route(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] in self.paths:
            await self.mcp(scope, receive, send)
        elif scope["path"] == "/healthz" and scope["method"] == "GET":
            await _plain(send, 200, b'{"status":"ok"}')
        else:
            await self.router(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.endpoint.sessions.close_all()
                for close in self.shutdown:
                    await close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
