"""The composition root: the one place that builds Bastion's ASGI stack from Settings.

Every collaborator is made here and handed to the objects that use it through their constructors; nothing is
set on an object after it is built. Whatever is opened here (the store, HTTP clients, tool threads, sessions) is
registered for closing at shutdown, in the reverse order of opening.

    request -> HeaderLimit (431) -> OriginGate (Host, Origin) -> Surface
               /mcp        -> BearerGate (when authentication is on) -> StreamableHTTP -> Server -> tool
               /healthz    -> 200
               everything else -> one Router: authorization server, consent, sign-in callbacks, metadata, worker

Tests (and, later, operators' tools) may pass their own store or upstream providers instead of those the settings
describe; everything else follows from the settings.
"""

from __future__ import annotations

import inspect
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.routing import BaseRoute, Router

from .mcp.http import StreamableHTTP
from .mcp.session import SessionTable
from .ops.access import AccessLog
from .security.limits import HeaderLimit
from .security.origin import OriginGate, OriginPolicy
from .settings import Settings, SettingsError
from .surface import Lifecycle, Step, Surface

if TYPE_CHECKING:
    from .app import App
    from .identity.upstream import UpstreamProvider
    from .oauth.server import AuthorizationServer
    from .ops.telemetry import Telemetry
    from .resource.challenge import Challenges
    from .store import Store
    from .store.bus import Bus


@dataclass
class _Opened:
    """What has been opened so far: closed at shutdown, newest first."""

    steps: list[Step] = field(default_factory=list)

    def add(self, name: str, close: Callable[[], Awaitable[None] | None]) -> None:
        async def run() -> None:
            outcome = close()
            if inspect.isawaitable(outcome):
                await outcome

        self.steps.append((name, run))

    def shutdown(self) -> list[Step]:
        return list(reversed(self.steps))


def build(
    app: App,
    settings: Settings,
    *,
    store: Store | None = None,
    upstream: Mapping[str, UpstreamProvider] | None = None,
    tracer_provider: Any = None,
) -> Surface:
    """The ASGI application serving `app` as `settings` describe; SettingsError if they cannot be served.
    `tracer_provider` (an OpenTelemetry SDK TracerProvider) receives the spans when [tracing] is on."""
    settings.check()
    opened = _Opened()
    startup: list[Step] = []
    telemetry = _telemetry(settings, opened, tracer_provider)
    routes: list[BaseRoute] = []

    # One bus per process, opened when something uses it: the bearer gate (revocations) and, on a store other
    # processes share, the relay that tells clients of every instance (or worker) about list changes and
    # resource updates raised on any.
    shared = settings.shared_by_processes
    bus = None
    if not settings.worker.only and (settings.authenticated or shared):
        bus = _open_bus(settings, opened, startup)
    # On a shared store legacy sessions are shared too, so that any process serves any request of a session.
    shares_sessions = shared and settings.stateful and bus is not None
    own_grants = settings.authenticated and settings.authorization_server.enabled
    if (bus is not None and (shares_sessions or own_grants)) or settings.limits.enabled:
        store = _opened_store(settings, store or configured_store(settings), opened, startup, telemetry)
    protection = None
    if settings.authenticated and bus is not None:
        scopes = app.scopes(settings)
        protection = _Protection.build(scopes, settings, opened, startup, store, upstream, bus, telemetry)
        routes += protection.routes
    gateway = _gateway(settings, app, opened, startup, telemetry.tracing if telemetry is not None else None)
    trail = protection.audit if protection is not None else None
    connections = protection.connections if protection is not None else None
    server = app.server(settings, telemetry, _middleware(settings, app, store, trail), gateway, connections)
    opened.add("tool threads", server.close)
    if shared and bus is not None:
        from .cluster.relay import Relay

        relay = Relay(app.broadcaster, bus)
        startup.append(("notification relay", relay.start))
        opened.add("notification relay", relay.close)
    stored_sessions = None
    if shares_sessions and store is not None and bus is not None:
        stored_sessions = _shared_sessions(settings, store, bus, opened)

    counted = telemetry.sessions if telemetry is not None and telemetry.metrics is not None else None
    sessions = SessionTable(
        settings.max_sessions, settings.session_idle_seconds, app.broadcaster, stored_sessions, counted
    )
    endpoint = StreamableHTTP(
        server,
        app.broadcaster,
        max_body_bytes=settings.max_body_bytes,
        stateful=settings.stateful,
        json_response=settings.json_response,
        sessions=sessions,
        challenge=protection.challenges.step_up if protection else None,
    )
    opened.add("MCP sessions", sessions.close_all)
    mcp: Any = protection.gate(endpoint) if protection else endpoint

    worker_trail = None
    if settings.worker.secret_env:
        from .worker.api import WorkerAPI

        worker_trail = protection.audit if protection is not None else None
        if worker_trail is None and settings.audit.enabled:
            worker_trail = _worker_trail(settings, opened, startup, store, telemetry)
        worker = WorkerAPI(
            server,
            settings.worker.secret() or "",
            settings.worker.max_token_seconds,
            require_exp=not settings.worker.allow_tokens_without_exp,
            audit=worker_trail,
        )
        routes += worker.routes()

    if telemetry is not None and telemetry.metrics is not None:
        routes += _metrics(settings, telemetry.metrics, opened, startup)

    mcp_paths = set() if settings.worker.only else {settings.path, settings.path + "/"}
    surface_store = protection.store if protection else worker_trail.store if worker_trail is not None else None
    return _surface(
        settings, mcp, mcp_paths, Router(routes), telemetry, Lifecycle(startup, opened.shutdown()), surface_store
    )


def _middleware(settings: Settings, app: App, store: Store | None, trail: Any) -> list[Any]:
    """Bastion's own middleware, outside the App's: [limits], counted in the store every instance shares; and,
    when any middleware could refuse a request, the refusals into the audit trail (outermost, to see them all;
    absent otherwise, since each layer costs every request)."""
    middleware: list[Any] = []
    if settings.limits.enabled and store is not None:
        from .cluster.limits import Limits

        middleware.append(Limits(store, settings.limits.requests_per_minute, dict(settings.limits.tools)))
    if trail is not None and (middleware or app.has_middleware):
        from .ops.refusals import RefusalAudit

        middleware.insert(0, RefusalAudit(trail))
    return middleware


def _gateway(settings: Settings, app: App, opened: _Opened, startup: list[Step], tracing: Any) -> list[Any]:
    """The servers Bastion fronts ([[gateway.servers]]): each listed once started, and kept current."""
    if not settings.gateway.servers:
        return []
    from .gateway.client import McpClient
    from .gateway.remote import Connections, PerCaller, RemoteServer, Shared
    from .gateway.stdio import PerUser
    from .http_client import Origin

    # Every instance must open what another sealed: the shared state secret when there is one.
    state_key = settings.state_key or secrets.token_bytes(32)
    servers = []
    for configured in settings.gateway.servers:
        connections: Connections
        if configured.url is not None:
            headers = {}
            token = configured.token()
            if token:
                header = configured.token_header
                headers[header] = f"Bearer {token}" if header.lower() == "authorization" else token
            origin = Origin(configured.url, timeout=configured.timeout_seconds)
            if configured.upstream is None:
                client = McpClient(origin, headers=headers, version=configured.protocol_version, tracing=tracing)
                connections = Shared(client)
            else:
                connections = PerCaller(_caller_client(origin, headers, configured, tracing), configured.upstream)
        else:
            connections = PerUser(configured)
        server = RemoteServer(configured, connections, state_key, app.broadcaster)
        startup.append((f"gateway server {configured.name}", server.start))
        opened.add(f"gateway server {configured.name}", server.stop)
        servers.append(server)
    return servers


def _caller_client(
    origin: Any, headers: dict[str, str], configured: Any, tracing: Any
) -> Callable[[Callable[[], Any]], Any]:
    """How a fronted server reached with each caller's own upstream token gets a client for a caller."""
    from .gateway.client import McpClient
    from .gateway.remote import bearer_of

    def make(principal: Callable[[], Any]) -> Any:
        async def credential() -> dict[str, str]:
            return await bearer_of(principal(), configured.upstream)

        version = configured.protocol_version
        return McpClient(origin, headers=headers, version=version, credential=credential, tracing=tracing)

    return make


def build_protected(
    inner: Any,
    settings: Settings,
    *,
    store: Store | None = None,
    upstream: Mapping[str, UpstreamProvider] | None = None,
    tracer_provider: Any = None,
) -> Surface:
    """Bastion's front door before `inner`, any ASGI MCP application (bastion.protect): the authorization server
    and external issuers as `settings` describe, protected resource metadata, challenges, Host and Origin checks.
    Every path that is not Bastion's own goes to `inner`, and only with a valid token; SettingsError if
    `settings` cannot be served, or protect nothing."""
    settings.check()
    if not settings.authenticated:
        raise SettingsError(
            "protect: nothing would check callers; turn on [authorization_server] enabled or add [[resource.issuers]]"
        )
    if settings.worker.secret_env:
        raise SettingsError("protect: the worker API serves Bastion's own tools; leave [worker] secret_env unset")
    if settings.limits.enabled:
        raise SettingsError("protect: [limits] counts the requests of Bastion's own tools; remove [limits]")
    from .gateway.asgi import InProcessApp

    opened = _Opened()
    startup: list[Step] = []
    telemetry = _telemetry(settings, opened, tracer_provider)
    bus = _open_bus(settings, opened, startup)
    if settings.authorization_server.enabled:
        store = _opened_store(settings, store or configured_store(settings), opened, startup, telemetry)
    scopes = set(settings.resource.required_scopes)
    if settings.authorization_server.enabled:
        scopes.update(settings.authorization_server.scopes)
    protection = _Protection.build(sorted(scopes), settings, opened, startup, store, upstream, bus, telemetry)
    app = InProcessApp(inner)
    startup.append(("the protected application", app.start))
    opened.add("the protected application", app.stop)
    gated = protection.gate(app)
    routes = list(protection.routes)
    if telemetry is not None and telemetry.metrics is not None:
        routes += _metrics(settings, telemetry.metrics, opened, startup)
    mcp_paths = {settings.path, settings.path + "/"}
    router = Router(routes, default=gated)  # the application's other paths: behind the gate too
    return _surface(
        settings, gated, mcp_paths, router, telemetry, Lifecycle(startup, opened.shutdown()), protection.store
    )


def _surface(
    settings: Settings,
    mcp: Any,
    mcp_paths: set[str],
    router: Any,
    telemetry: Telemetry | None,
    lifecycle: Lifecycle,
    store: Store | None,
) -> Surface:
    """The MCP endpoint and the router behind the guards every request passes."""
    origins = origin_policy(settings)
    # Outermost first: the access log sees every request and its answer (then, with tracing, each request takes
    # its trace context); then the cheapest refusal (an oversized head) before any header is interpreted.
    guards: list[Any] = [lambda inner: AccessLog(inner, lines=settings.access_log)]
    if telemetry is not None and telemetry.tracing is not None:
        from .ops.tracing import TraceContext

        tracing = telemetry.tracing
        guards.append(lambda inner: TraceContext(inner, tracing, mcp_paths))
    guards += [
        lambda inner: HeaderLimit(inner, settings.max_header_bytes),
        lambda inner: OriginGate(inner, origins),
    ]
    return Surface(mcp, mcp_paths, router, guards=guards, lifecycle=lifecycle, store=store)


def origin_policy(settings: Settings) -> OriginPolicy:
    hosts, origins = list(settings.allowed_hosts), list(settings.allowed_origins)
    scheme = None
    if settings.public_url:
        public = urlsplit(settings.public_url)
        hosts.append(public.netloc)
        origins.append(f"{public.scheme}://{public.netloc}")
        scheme = public.scheme
    return OriginPolicy.build(hosts, origins, settings.binds_loopback, scheme)


@dataclass
class _Protection:
    """Authentication in front of /mcp: Bastion's own authorization server, external issuers, or both. Imported
    only when used: an unauthenticated server never loads the OAuth stack or its crypto."""

    verify: Callable[[str, str], Awaitable[Any]]  # the TokenVerifier
    challenges: Challenges
    bus: Bus
    routes: list[BaseRoute]
    store: Store | None
    audit: Any  # the AuditTrail, when the authorization server keeps one
    telemetry: Telemetry | None
    connections: Any = None  # the engine's hook for users' connected accounts ([[connections]])

    def gate(self, endpoint: Any) -> Any:
        from .resource.bearer import BearerGate

        verify = self.verify
        if self.telemetry is not None and self.telemetry.tracing is not None:
            verify = self.telemetry.tracing.verifier(verify)
        return BearerGate(endpoint, verify, self.challenges, self.bus, audit=self.audit, telemetry=self.telemetry)

    @classmethod
    def build(
        cls,
        scopes: list[str],
        settings: Settings,
        opened: _Opened,
        startup: list[Step],
        store: Store | None,
        upstream: Mapping[str, UpstreamProvider] | None,
        bus: Bus,
        telemetry: Telemetry | None,
    ) -> _Protection:
        from .resource import metadata as resource_metadata
        from .resource.challenge import Challenges
        from .resource.tokens import TokenVerifier
        from .store.bus import LocalBus

        if not settings.authorization_server.enabled:
            # Only Bastion's own grants are revoked: without its authorization server the gate has nothing to hear,
            # and its cache of external verifications need not depend on the shared bus being up.
            bus = LocalBus()
        routes: list[BaseRoute] = []
        authorization = trail = connections = None
        if settings.authorization_server.enabled and store is not None:
            trail = _audit_trail(settings, store, opened, telemetry)
            accounts = _account_sessions(settings, store)
            authorization = _authorization_server(
                scopes, settings, store, bus, opened, upstream, trail, telemetry, accounts
            )
            routes += authorization.routes()
            connected = _connected_accounts(settings, store, opened, telemetry)
            routes += _account_pages(settings, authorization, accounts, trail, opened, startup, connected)
            if connected is not None:
                from .connections.engine import EngineConnections

                audit = trail.record if trail is not None else None
                connections = EngineConnections(*connected, settings.public_url, audit=audit)
        issuers = _external_issuers(settings, opened, telemetry)
        verify = TokenVerifier(authorization.grants.verify if authorization else None, issuers)
        required = tuple(settings.resource.required_scopes)
        challenges = Challenges(settings.public_url, settings.path, required, audit=trail)
        own = authorization is not None

        def servers(base: str) -> list[str]:
            # Bastion's own authorization server first: clients that pick one pick the first.
            return ([base] if own else []) + [issuer.issuer for issuer in issuers]

        routes += resource_metadata.routes(settings.public_url, settings.path, servers, scopes)
        return cls(verify, challenges, bus, routes, store if own else None, trail, telemetry, connections)


def configured_store(settings: Settings) -> Store:
    """The store [store] describes. Network backends are imported only here, when configured."""
    from .store import StoreUnavailable, open_store

    configured = settings.store
    try:
        return open_store(
            configured.backend, path=configured.path, url=configured.connection_url(), cluster=configured.cluster
        )
    except StoreUnavailable as exc:
        where = f"at {configured.path!r} " if configured.backend == "sqlite" else ""
        fix = "set [store] path to a writable file" if configured.backend == "sqlite" else "check [store]"
        raise SettingsError(f"store: {configured.backend} {where}cannot be used ({exc}); {fix}") from None


def _open_bus(settings: Settings, opened: _Opened, startup: list[Step]) -> Bus:
    """Within this process for memory; through the file for SQLite when the grants are kept there or workers share
    it (every process on it hears revocations, session events and list changes: --workers); through PostgreSQL or
    Redis, reaching every instance, for those (also without authentication: the relay of list changes needs it)."""
    from .store import open_bus

    configured = settings.store
    # An external issuer's tokens alone, in one process, need nobody else to hear.
    own_grants = settings.authenticated and settings.authorization_server.enabled
    through_file = own_grants or settings.shared_by_processes
    path = configured.path if configured.backend == "sqlite" and through_file else None
    bus = open_bus(configured.backend, path=path, url=configured.connection_url(), cluster=configured.cluster)
    startup.append(("bus", bus.start))
    opened.add("bus", bus.close)
    return bus


def _shared_sessions(settings: Settings, store: Store, bus: Bus, opened: _Opened) -> Any:
    from .cluster.sessions import StoreSessions

    # settings.check() refuses a shared store without a state secret: every instance must make the same MACs.
    secret = settings.state_key or b""
    shared = StoreSessions(store, bus, secret, idle_seconds=settings.session_idle_seconds)
    opened.add("shared sessions", shared.close)
    return shared


def _reachable(store: Store) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        from .store import keys

        await store.get(keys.client("startup-check"))  # any read: it raises StoreUnavailable if the store cannot

    return check


def _authorization_server(
    scopes: list[str],
    settings: Settings,
    store: Store,
    bus: Bus,
    opened: _Opened,
    upstream: Mapping[str, UpstreamProvider] | None,
    trail: Any,
    telemetry: Telemetry | None,
    accounts: Any,
) -> AuthorizationServer:
    from .identity.dev import DevLogin
    from .identity.login import UpstreamLogin
    from .identity.upstream import ProviderTokens
    from .oauth import server as oauth
    from .oauth.grants import Grants
    from .oauth.transactions import SignInDesk, Transactions

    configured = settings.authorization_server
    providers = dict(upstream) if upstream is not None else _upstream_providers(settings, opened, telemetry)
    audit = trail.record if trail is not None else None
    grants = Grants(
        store,
        oauth.lifetimes(configured),
        bus=bus,
        upstream=ProviderTokens(providers, telemetry) if providers else None,
        audit=audit,
    )
    approvals = oauth.approvals(configured)
    transactions = Transactions(store, grants, approvals, settings.public_url, audit=audit, accounts=accounts)
    desk: SignInDesk = transactions
    methods: list[oauth.Authenticator] = [DevLogin(desk)] if configured.dev_login else []
    labels = {entry.name: entry.button_label() for entry in configured.upstream}
    methods += [
        UpstreamLogin(desk, store, provider, labels.get(name), audit=audit) for name, provider in providers.items()
    ]
    offered = configured.model_copy(update={"scopes": scopes})
    return oauth.AuthorizationServer(
        offered,
        store,
        grants,
        transactions,
        approvals,
        methods,
        oauth.metadata_documents(offered),
        settings.public_url,
        settings.path,
        audit=audit,
    )


def _worker_trail(
    settings: Settings, opened: _Opened, startup: list[Step], store: Store | None, telemetry: Telemetry | None
) -> Any:
    """The audit trail of worker invocations when no authorization server keeps one: on the configured store,
    opened for it (a worker-only deployment keeps its trail too)."""
    if store is None:
        store = _opened_store(settings, configured_store(settings), opened, startup, telemetry)
    return _audit_trail(settings, store, opened, telemetry)


def _opened_store(
    settings: Settings, store: Store, opened: _Opened, startup: list[Step], telemetry: Telemetry | None
) -> Store:
    """`store`, observed when telemetry is on, started (and checked) at start-up and closed at shutdown."""
    if telemetry is not None:
        from .ops.observed_store import ObservedStore

        store = ObservedStore(store, settings.store.backend, telemetry)
    opened.add("store", store.close)
    startup.append(("store", store.start))
    startup.append(("store", _reachable(store)))
    return store


def _account_sessions(settings: Settings, store: Store) -> Any:
    from .account.sessions import AccountSessions

    return AccountSessions(store, settings.admin.session_hours * 3600)


def _connected_accounts(
    settings: Settings, store: Store, opened: _Opened, telemetry: Telemetry | None
) -> tuple[Any, Any] | None:
    """Users' connected accounts and the links to connect them ([[connections]]); None when none is declared."""
    if not settings.connections:
        return None
    from .connections.accounts import ConnectedAccounts, accounts_key
    from .connections.links import ConnectLinks
    from .connections.provider import TIMEOUT, ConnectionProvider

    http = _http_client(TIMEOUT, telemetry)
    opened.add("connection provider client", http.aclose)
    try:
        providers = {entry.name: ConnectionProvider(entry, http) for entry in settings.connections}
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    # settings.check() refuses [[connections]] without a state secret: the tokens must outlive restarts.
    accounts = ConnectedAccounts(store, providers, accounts_key(settings.state_key or b""))
    return accounts, ConnectLinks(store)


def _account_pages(
    settings: Settings,
    authorization: AuthorizationServer,
    accounts: Any,
    trail: Any,
    opened: _Opened,
    startup: list[Step],
    connected: tuple[Any, Any] | None,
) -> list[BaseRoute]:
    """The connected applications page, and the admin page and API: signed in through the same sign-in methods;
    and the sweep that removes expired registrations, through the same Administration. With [[connections]], the
    pages users connect accounts on, listed on the same page."""
    from .account.admin import AdminPages
    from .account.pages import AccountPages, SignedIn
    from .admin.expiry import ExpirySweep
    from .admin.operations import Administration

    connected_accounts = connected[0] if connected is not None else None
    audit = trail.record if trail else None
    administration = Administration(authorization.store, authorization.grants, audit, connected_accounts)
    sweep = ExpirySweep(administration)
    startup.append(("client expiry sweep", sweep.start))
    opened.add("client expiry sweep", sweep.close)
    signed_in = SignedIn(authorization, accounts)
    admins = frozenset(settings.admin.subjects)
    routes = (
        AccountPages(signed_in, administration, admins, connected_accounts).routes()
        + AdminPages(signed_in, administration, admins).routes()
    )
    if connected is not None:
        from .connections.pages import ConnectPages

        vault, links = connected
        routes += ConnectPages(signed_in, vault.store, links, vault, audit).routes()
    return routes


def _audit_trail(settings: Settings, store: Store, opened: _Opened, telemetry: Telemetry | None) -> Any:
    """The audit trail on the authorization server's store, with its sink; None when turned off (and nothing
    counts security events: with metrics on, a trail that counts them and keeps nothing)."""
    from .ops.audit import trail_for

    count = telemetry.security_event if telemetry is not None and telemetry.metrics is not None else None
    trail = trail_for(settings.audit, store, count)
    if trail is None:
        return None
    sink = settings.audit.sink
    if sink and sink != "stdout" and not os.access(os.path.dirname(os.path.abspath(sink)), os.W_OK):
        raise SettingsError(f"audit.sink: cannot write a file in the folder of {sink!r}: create it, or choose another")
    opened.add("audit trail", trail.close)
    return trail


def _upstream_providers(
    settings: Settings, opened: _Opened, telemetry: Telemetry | None
) -> dict[str, UpstreamProvider]:
    entries = settings.authorization_server.upstream
    if not entries:
        return {}
    from .identity import upstream_provider
    from .identity.oidc import TIMEOUT

    http = _http_client(TIMEOUT, telemetry)
    opened.add("identity provider client", http.aclose)
    return {entry.name: upstream_provider(entry, http) for entry in entries}


def _external_issuers(settings: Settings, opened: _Opened, telemetry: Telemetry | None) -> list[Any]:
    if not settings.resource.issuers:
        return []
    from .resource.discovery import TIMEOUT
    from .resource.issuer import ExternalIssuer

    http = _http_client(TIMEOUT, telemetry)
    opened.add("issuer client", http.aclose)
    return [ExternalIssuer(issuer, http) for issuer in settings.resource.issuers]


def _http_client(timeout: Any, telemetry: Telemetry | None) -> Any:
    """A client for calls to providers and issuers; each call a span when tracing is on."""
    import httpx

    tracing = telemetry.tracing if telemetry is not None else None
    transport = tracing.transport() if tracing is not None else None
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport)


def _telemetry(settings: Settings, opened: _Opened, tracer_provider: Any) -> Telemetry | None:
    """Metrics and tracing as [metrics] and [tracing] say; None when both are off (nothing is then measured)."""
    if not settings.metrics.enabled and not settings.tracing.enabled:
        return None
    from .ops.telemetry import Telemetry

    metrics = tracing = None
    if settings.metrics.enabled:
        from .ops.metrics import Metrics

        metrics = Metrics()
    if settings.tracing.enabled:
        from .ops.tracing import Tracing, configured_provider

        tracing = Tracing(tracer_provider) if tracer_provider is not None else configured_provider()
        opened.add("tracing", tracing.close)
    return Telemetry(metrics, tracing)


def _metrics(settings: Settings, metrics: Any, opened: _Opened, startup: list[Step]) -> list[BaseRoute]:
    """/metrics on the MCP port, or the metrics port (served by the parent under --workers: only one process
    can listen on it, and it adds up every worker's values)."""
    from starlette.routing import Route

    from .ops.scrape import MetricsPort, MetricsRoute, ScrapeRule

    configured = settings.metrics
    rule = ScrapeRule(configured.allow_from, configured.token())
    if configured.port is None:
        return [Route(configured.path, MetricsRoute(metrics.exposition, rule), methods=["GET", "HEAD"])]
    if settings.workers == 1:
        port = MetricsPort(configured.host, configured.port, metrics.exposition, rule)

        async def listen() -> None:
            port.start()

        startup.append(("metrics", listen))
        opened.add("metrics port", port.stop)
    return []
