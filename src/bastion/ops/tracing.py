"""OpenTelemetry spans, after the MCP semantic conventions (docs/operations.md#tracing). Imported only when
[tracing] is on: the otel extra brings the SDK and the OTLP exporter.

- One SERVER span per MCP request, named `{mcp.method.name} {target}` (the tool or prompt; the method alone
  otherwise: resource URIs are attributes, never names). Its parent is the trace context the client put in the
  request's `params._meta` (traceparent, tracestate); the HTTP request's own context (its `traceparent`
  header) is its parent when `_meta` has none, and a link when it has.
- One SERVER span per other HTTP request (the authorization server's endpoints), child of its traceparent header.
- INTERNAL spans for token verification that is not served from memory, and for store operations; CLIENT spans
  for calls to upstream providers and issuers (their traceparent header goes with them).

Spans never carry a token, code, secret or tool argument: a span holds what a log line may hold.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlunsplit

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ..principal import SCOPE_KEY
from ..public_url import route_path
from ..settings.telemetry import trace_exporters
from .finished_span import SharedAttributes
from .otlp import SERVER, LightTracer

if TYPE_CHECKING:
    from ..mcp.exchange import Exchange

T = TypeVar("T")
TRACE_KEYS = ("traceparent", "tracestate", "baggage")  # unprefixed in _meta (SEP-414)
TRACE_HEADERS = frozenset(key.encode() for key in TRACE_KEYS)
_RESOURCE_METHODS = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})


class Tracing:
    def __init__(self, provider: Any, *, owned: bool = False) -> None:
        self.provider = provider
        self.owned = owned  # made by Bastion (configured_provider): flushed and shut down with the server
        self.tracer = provider.get_tracer("bastion", _version())
        self.light = isinstance(self.tracer, LightTracer)  # Bastion's own pipeline: shared attributes kept apart
        self._operations: dict[tuple[Any, ...], tuple[str, SharedAttributes]] = {}  # by _shared_by_operation

    async def close(self) -> None:
        """Send what is left, if Bastion made the provider (an embedding program's own is its to close)."""
        if not self.owned:
            return
        if hasattr(self.provider, "aclose"):  # Bastion's own pipeline (ops/otlp.py) sends from the loop
            await self.provider.aclose()
        else:
            self.provider.shutdown()

    # --- MCP requests -------------------------------------------------------------------------------------
    def operation(self, ex: Exchange, params: dict[str, Any], method: str, tool: str, prompt: str) -> OperationSpan:
        principal = ex.principal
        caller = (principal.subject, principal.client_id) if principal is not None else None
        key = (method, tool, prompt, ex.protocol_version, caller)
        name, shared = self._operations.get(key) or self._shared_by_operation(key)
        request_id = ex.request_id  # what differs from request to request:
        attributes: dict[str, Any] = {"jsonrpc.request.id": str(request_id)} if request_id is not None else {}
        if ex.session_id:
            attributes["mcp.session.id"] = ex.session_id
        if method in _RESOURCE_METHODS and isinstance(uri := params.get("uri"), str):
            attributes["mcp.resource.uri"] = uri[:2048]
        current = otel_context.get_current()
        meta = params.get("_meta")
        parent, links = _parent(meta) if meta is not None else (None, ())
        if self.light:
            span = self.tracer.start_shared(name, parent or current, SERVER, shared, attributes, links)
        else:
            attributes = {**shared.values, **attributes}
            span = self.tracer.start_span(name, parent or current, SpanKind.SERVER, attributes, links)
        return OperationSpan(span, current)

    def _shared_by_operation(
        self, key: tuple[str, str, str, str, tuple[str, str] | None]
    ) -> tuple[str, SharedAttributes]:
        """The span name and the attributes every request for this method, tool or prompt, protocol version and
        caller (subject and client) has alike, made once and kept for the most recent few thousand (a client
        calls the same few methods and tools, again and again)."""
        method, tool, prompt, version, caller = key
        values = {
            "mcp.method.name": method,
            "mcp.protocol.version": version,
            "network.transport": "tcp",
            "network.protocol.name": "http",
        }
        if tool:
            values["gen_ai.tool.name"] = tool
            values["gen_ai.operation.name"] = "execute_tool"
        if prompt:
            values["gen_ai.prompt.name"] = prompt
        if caller is not None:
            values["enduser.id"], values["bastion.client.id"] = caller
        target = tool or prompt
        known = (f"{method} {target}" if target else method, SharedAttributes(values))
        if len(self._operations) >= 4096:
            self._operations.clear()
        self._operations[key] = known
        return known

    # --- the rest of the server ---------------------------------------------------------------------------
    async def around(self, name: str, attributes: dict[str, Any], work: Awaitable[T], kind: Any = None) -> T:
        """Await `work` inside a span `name` (INTERNAL unless `kind`), marked as an error if it raises."""
        with self.tracer.start_as_current_span(
            name, kind=kind or SpanKind.INTERNAL, attributes=attributes, record_exception=False
        ) as span:
            try:
                return await work
            except BaseException as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
                span.set_attribute("error.type", type(exc).__qualname__)
                raise

    def verifier(self, verify: Callable[[str, str], Awaitable[Any]]) -> Callable[[str, str], Awaitable[Any]]:
        """`verify` (TokenVerifier) in a span saying whether the token was valid and whose it is."""

        async def traced(token: str, resource: str) -> Any:
            with self.tracer.start_as_current_span("bastion.token.verify", record_exception=False) as span:
                principal = await verify(token, resource)
                span.set_attribute("bastion.token.valid", principal is not None)
                if principal is not None:
                    span.set_attribute("enduser.id", principal.subject)
                    span.set_attribute("bastion.client.id", principal.client_id)
                return principal

        return traced

    @contextlib.contextmanager
    def mcp_client_call(
        self, method: str, target: str, address: str, port: int, session_id: str | None
    ) -> Iterator[dict[str, str]]:
        """A CLIENT span for an MCP request the gateway sends to a server it fronts (`{method} {target}`, the MCP
        semantic conventions' client attributes), current while it runs; yields the trace context to send with
        the request (the headers, and its `_meta`), so that the server's spans join the caller's trace."""
        attributes: dict[str, Any] = {
            "mcp.method.name": method,
            "server.address": address,
            "server.port": port,
            "network.transport": "tcp",
            "network.protocol.name": "http",
        }
        if target and method == "tools/call":
            attributes["gen_ai.tool.name"] = target
            attributes["gen_ai.operation.name"] = "execute_tool"
        elif target and method == "prompts/get":
            attributes["gen_ai.prompt.name"] = target
        if session_id:
            attributes["mcp.session.id"] = session_id
        name = f"{method} {target}" if target and method in ("tools/call", "prompts/get") else method
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            try:
                yield carrier
            except BaseException as exc:
                error = str(exc.code) if hasattr(exc, "code") else type(exc).__qualname__
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, error))
                raise

    def transport(self, inner: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncBaseTransport:
        """An HTTP transport for calls to upstream providers and issuers: a CLIENT span each."""
        return _TracedTransport(inner or httpx.AsyncHTTPTransport(), self)


def _parent(meta: Any) -> tuple[otel_context.Context | None, Sequence[Link]]:
    """The trace context the client put in `_meta` as the parent, the HTTP request's (current) as a link; or
    none (then the current context is the parent)."""
    if not isinstance(meta, dict) or "traceparent" not in meta:  # (tracestate and baggage alone are no parent)
        return None, ()
    carrier = {k: v for k in TRACE_KEYS if isinstance(v := meta.get(k), str)}
    if not carrier:
        return None, ()
    parent = propagate.extract(carrier)
    if not trace.get_current_span(parent).get_span_context().is_valid:
        return None, ()  # a malformed traceparent is no context: the HTTP request's, if any, is used
    ambient = trace.get_current_span().get_span_context()
    return parent, [Link(ambient)] if ambient.is_valid else ()


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("mcp-bastion")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return None


class OperationSpan:
    """An MCP request's span, current while the request runs (store operations and upstream calls nest in it)."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, current: otel_context.Context) -> None:
        self.span = span
        self.token = otel_context.attach(trace.set_span_in_context(span, current))

    def finish(self, error: str) -> None:
        if error:
            self.span.set_attribute("error.type", error)
            if error.lstrip("-").isdigit():
                self.span.set_attribute("rpc.response.status_code", error)
            self.span.set_status(Status(StatusCode.ERROR, error))
        otel_context.detach(self.token)
        self.span.end()


class TraceContext:
    """The outermost guard when tracing is on: each HTTP request runs in the trace context of its traceparent
    header; requests other than MCP ones (which get their own span) get a SERVER span."""

    def __init__(self, app: Any, tracing: Tracing, mcp_paths: set[str]) -> None:
        self.app = app
        self.tracer = tracing.tracer
        self.mcp_paths = mcp_paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {}
        for name, value in scope["headers"]:
            if name in TRACE_HEADERS:
                carrier[name.decode()] = value.decode("latin-1")
        token = otel_context.attach(propagate.extract(carrier)) if carrier else None
        try:
            if route_path(scope) in self.mcp_paths:
                await self.app(scope, receive, send)
            else:
                await self._spanned(scope, receive, send)
        finally:
            if token is not None:
                otel_context.detach(token)

    async def _spanned(self, scope: Any, receive: Any, send: Any) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        attributes = {"http.request.method": method, "url.path": scope["path"][:2048], "url.scheme": scope["scheme"]}
        with self.tracer.start_as_current_span(
            method, kind=SpanKind.SERVER, attributes=attributes, record_exception=False
        ) as span:
            status = 500

            async def noted(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, noted)
            finally:
                span.set_attribute("http.response.status_code", status)
                if status != 404:  # a path that is a route: low cardinality, so it may name the span
                    span.update_name(f"{method} {scope['path']}")
                principal = scope.get(SCOPE_KEY)
                if principal is not None:
                    span.set_attribute("enduser.id", principal.subject)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, str(status)))


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class _TracedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, tracing: Tracing) -> None:
        self.inner = inner
        self.tracer = tracing.tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        # Never the query string: codes and states travel there.
        shown = urlunsplit((url.scheme, url.netloc.decode("ascii"), url.path, "", ""))
        attributes = {
            "http.request.method": request.method,
            "url.full": shown,
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        with self.tracer.start_as_current_span(
            request.method, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            propagate.inject(request.headers)
            try:
                response = await self.inner.handle_async_request(request)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(Status(StatusCode.ERROR))
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def otlp_protocol(environ: Any) -> str:
    return str(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )


def configured_provider() -> Tracing:
    """The tracer provider the embedding program set, if it set one; else Bastion's own, exporting as the
    standard variables say: OTLP alone (the default) through Bastion's own pipeline (ops/otlp.py: protobuf or, with
    http/json, JSON); with OTEL_TRACES_EXPORTER=console (or console,otlp), or none, through the SDK. Then
    OTEL_EXPORTER_OTLP_* (endpoint, headers), OTEL_SERVICE_NAME (bastion by default), OTEL_TRACES_SAMPLER."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return Tracing(current)
    exporters = trace_exporters(os.environ)  # names Settings.check has already accepted
    if exporters == {"otlp"}:
        from .otlp import light_provider

        return Tracing(light_provider(), owned=True)
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "bastion"})
    provider = TracerProvider(resource=resource)
    if "otlp" in exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in exporters:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return Tracing(provider, owned=True)
