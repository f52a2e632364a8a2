"""App: register tools, resources and prompts, then serve them over stdio or Streamable HTTP."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .mcp.connect import Connections
from .mcp.middleware import Middleware
from .mcp.notify import Broadcaster
from .mcp.policy import Policy
from .mcp.registry import Registry
from .mcp.server import Server
from .mcp.sources import Source
from .secrets import SecretSource
from .settings import Settings

if TYPE_CHECKING:
    from .ops.telemetry import Telemetry
    from .surface import Surface

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=Middleware)
log = logging.getLogger("bastion")


class App:
    """An MCP server: decorate functions to offer them, then `run()` it or `bastion serve` it."""

    def __init__(self, name: str, version: str = "0.1.0", instructions: str | None = None) -> None:
        self.name = name
        self.version = version
        self.instructions = instructions
        self.registry = Registry()
        self.broadcaster = Broadcaster()
        self._middleware: list[Middleware] = []

    # --- registration -------------------------------------------------------------------------------
    @overload
    def tool(self, fn: F) -> F: ...
    @overload
    def tool(self, fn: None = None, **options: Any) -> Callable[[F], F]: ...

    def tool(self, fn: F | None = None, **options: Any) -> F | Callable[[F], F]:
        """Offer a function as a tool. Options: name, title, description, annotations, scopes (needed to see
        and call it), requires_secrets, requires_upstream, upstream_scopes, input_schema, structured_output,
        meta, icons, task_support ("optional" or "required": a long call becomes a task its client polls)."""

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

    def middleware(self, fn: M) -> M:
        """Run `fn(call, proceed)` around every MCP request (bastion.Call; return `await proceed(call)`, or raise
        bastion.Denied). The first registered is the outermost."""
        self._middleware.append(fn)
        return fn

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

    def remove_prompt(self, name: str) -> None:
        del self.registry.prompts[name]
        self._changed("prompts")

    def remove_resource(self, uri: str) -> None:
        """Remove a resource (by its URI) or a resource template (by its URI template)."""
        found = self.registry.resources.pop(uri, None) or self.registry.templates.pop(uri, None)
        if found is None:
            raise KeyError(uri)
        self._changed("resources")

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
    @property
    def has_middleware(self) -> bool:
        return bool(self._middleware)

    def server(
        self,
        settings: Settings,
        telemetry: Telemetry | None = None,
        middleware: Sequence[Middleware] = (),
        sources: Sequence[Source] = (),
        connections: Connections | None = None,
    ) -> Server:
        """The engine serving this App; `middleware` (Bastion's own, such as [limits]) runs outside the App's,
        `sources` are the servers it fronts ([[gateway.servers]]), `connections` users' connected accounts."""
        return Server(
            self.registry,
            name=self.name,
            version=self.version,
            instructions=self.instructions,
            secrets=SecretSource(settings.env_file),
            tool_timeout=settings.tool_timeout_seconds,
            mask_error_details=settings.mask_error_details,
            state_key=settings.state_key,
            tool_threads=settings.tool_threads,
            policy=self.policy(settings),
            telemetry=telemetry,
            middleware=[*middleware, *self._middleware],
            sources=sources,
            connections=connections,
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

    def asgi(self, settings: Settings | None = None) -> Surface:
        """The ASGI application serving this App at settings.path (for uvicorn or any ASGI server). It refuses
        (SettingsError) what `bastion serve` refuses."""
        from .compose import build

        return build(self, settings or Settings.load())

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
