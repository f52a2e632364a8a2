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
    from .resource.challenge import Challenges
    from .resource.tokens import TokenVerifier
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
) -> Surface:
    """The ASGI application serving `app` as `settings` describe; SettingsError if they cannot be served."""
    settings.check()
    opened = _Opened()
    startup: list[Step] = []
    server = app.server(settings)
    opened.add("tool threads", server.close)
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
    if bus is not None and (shares_sessions or own_grants):
        store = store or configured_store(settings)
        opened.add("store", store.close)
        startup.append(("store", store.start))
        startup.append(("store", _reachable(store)))
    protection = None
    if settings.authenticated and bus is not None:
        protection = _Protection.build(app, settings, opened, store, upstream, bus)
        routes += protection.routes
    if shared and bus is not None:
        from .cluster.relay import Relay

        relay = Relay(app.broadcaster, bus)
        startup.append(("notification relay", relay.start))
        opened.add("notification relay", relay.close)
    stored_sessions = None
    if shares_sessions and store is not None and bus is not None:
        stored_sessions = _shared_sessions(settings, store, bus, opened)

    sessions = SessionTable(settings.max_sessions, settings.session_idle_seconds, app.broadcaster, stored_sessions)
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

    if settings.worker.secret_env:
        from .worker.api import WorkerAPI

        worker = WorkerAPI(
            server,
            settings.worker.secret() or "",
            settings.worker.max_token_seconds,
            require_exp=not settings.worker.allow_tokens_without_exp,
        )
        routes += worker.routes()

    origins = origin_policy(settings)
    return Surface(
        mcp,
        set() if settings.worker.only else {settings.path, settings.path + "/"},
        Router(routes),
        # Outermost first: the access log sees every request and its answer; then the cheapest refusal (an
        # oversized head) before any header is interpreted.
        guards=[
            lambda inner: AccessLog(inner, lines=settings.access_log),
            lambda inner: HeaderLimit(inner, settings.max_header_bytes),
            lambda inner: OriginGate(inner, origins),
        ],
        lifecycle=Lifecycle(startup, opened.shutdown()),
        store=protection.store if protection else None,
    )


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

    verify: TokenVerifier
    challenges: Challenges
    bus: Bus
    routes: list[BaseRoute]
    store: Store | None
    audit: Any  # the AuditTrail, when the authorization server keeps one

    def gate(self, endpoint: Any) -> Any:
        from .resource.bearer import BearerGate

        return BearerGate(endpoint, self.verify, self.challenges, self.bus, audit=self.audit)

    @classmethod
    def build(
        cls,
        app: App,
        settings: Settings,
        opened: _Opened,
        store: Store | None,
        upstream: Mapping[str, UpstreamProvider] | None,
        bus: Bus,
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
        authorization = trail = None
        if settings.authorization_server.enabled and store is not None:
            trail = _audit_trail(settings, store, opened)
            authorization = _authorization_server(app, settings, store, bus, opened, upstream, trail)
            routes += authorization.routes()
        issuers = _external_issuers(settings, opened)
        verify = TokenVerifier(authorization.grants.verify if authorization else None, issuers)
        required = tuple(settings.resource.required_scopes)
        challenges = Challenges(settings.public_url, settings.path, required, audit=trail)
        own = authorization is not None

        def servers(base: str) -> list[str]:
            # Bastion's own authorization server first: clients that pick one pick the first.
            return ([base] if own else []) + [issuer.issuer for issuer in issuers]

        routes += resource_metadata.routes(settings.public_url, settings.path, servers, app.scopes(settings))
        return cls(verify, challenges, bus, routes, store if own else None, trail)


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
    secret = settings.state_secret.get_secret_value().encode() if settings.state_secret else b""
    shared = StoreSessions(store, bus, secret, idle_seconds=settings.session_idle_seconds)
    opened.add("shared sessions", shared.close)
    return shared


def _reachable(store: Store) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        from .store import keys

        await store.get(keys.client("startup-check"))  # any read: it raises StoreUnavailable if the store cannot

    return check


def _authorization_server(
    app: App,
    settings: Settings,
    store: Store,
    bus: Bus,
    opened: _Opened,
    upstream: Mapping[str, UpstreamProvider] | None,
    trail: Any,
) -> AuthorizationServer:
    from .identity.dev import DevLogin
    from .identity.login import UpstreamLogin
    from .identity.upstream import ProviderTokens
    from .oauth import server as oauth
    from .oauth.grants import Grants
    from .oauth.transactions import SignInDesk, Transactions

    configured = settings.authorization_server
    providers = dict(upstream) if upstream is not None else _upstream_providers(settings, opened)
    audit = trail.record if trail is not None else None
    grants = Grants(
        store,
        oauth.lifetimes(configured),
        bus=bus,
        upstream=ProviderTokens(providers) if providers else None,
        audit=audit,
    )
    approvals = oauth.approvals(configured)
    transactions = Transactions(store, grants, approvals, settings.public_url, audit=audit)
    desk: SignInDesk = transactions
    methods: list[oauth.Authenticator] = [DevLogin(desk)] if configured.dev_login else []
    labels = {entry.name: entry.button_label() for entry in configured.upstream}
    methods += [
        UpstreamLogin(desk, store, provider, labels.get(name), audit=audit) for name, provider in providers.items()
    ]
    offered = configured.model_copy(update={"scopes": app.scopes(settings)})
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


def _audit_trail(settings: Settings, store: Store, opened: _Opened) -> Any:
    """The audit trail on the authorization server's store, with its sink; None when turned off."""
    from .ops.audit import trail_for

    trail = trail_for(settings.audit, store)
    if trail is None:
        return None
    sink = settings.audit.sink
    if sink and sink != "stdout" and not os.access(os.path.dirname(os.path.abspath(sink)), os.W_OK):
        raise SettingsError(f"audit.sink: cannot write a file in the folder of {sink!r}: create it, or choose another")
    opened.add("audit trail", trail.close)
    return trail


def _upstream_providers(settings: Settings, opened: _Opened) -> dict[str, UpstreamProvider]:
    entries = settings.authorization_server.upstream
    if not entries:
        return {}
    import httpx

    from .identity import upstream_provider
    from .identity.oidc import TIMEOUT

    http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
    opened.add("identity provider client", http.aclose)
    return {entry.name: upstream_provider(entry, http) for entry in entries}


def _external_issuers(settings: Settings, opened: _Opened) -> list[Any]:
    if not settings.resource.issuers:
        return []
    import httpx

    from .resource.discovery import TIMEOUT
    from .resource.issuer import ExternalIssuer

    http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
    opened.add("issuer client", http.aclose)
    return [ExternalIssuer(issuer, http) for issuer in settings.resource.issuers]
