"""The start-up checks: combinations that would expose an unauthenticated server, sign-in that cannot work,
missing or guessable secrets. Each problem is one line saying what to change; Settings.check raises them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .secret_strength import GENERATE, weakness
from .secrets import secret_problem

if TYPE_CHECKING:
    from .model import Settings


def start_up_problems(settings: Settings) -> list[str]:
    """Every reason these settings must not start a server, in the order an operator should fix them."""
    problems: list[str] = []
    if not settings.binds_loopback and not settings.authenticated and not settings.insecure_no_auth:
        problems.append(
            f"host = {settings.host!r}{settings.where('host')} would serve MCP without authentication beyond this "
            "machine. Bind "
            "127.0.0.1 for local development, or pass --insecure-no-auth (insecure_no_auth = true) if you "
            "really mean to expose unauthenticated tools."
        )
    server = settings.authorization_server
    if server.enabled and not server.dev_login and not server.upstream:
        problems.append(
            "authorization_server.enabled has no sign-in method, so every sign-in would fail: add an identity "
            "provider ([[authorization_server.upstream]], see docs/authorization.md), or dev_login = true for "
            "local development"
        )
    if server.dev_login and not settings.binds_loopback:
        problems.append(
            "authorization_server.dev_login signs anyone in without a password: it works only on a loopback "
            "host. Configure an identity provider instead."
        )
    names = [provider.name for provider in server.upstream]
    if len(set(names)) != len(names) or "dev" in names:
        problems.append("each [[authorization_server.upstream]] needs its own name (and 'dev' is dev login's)")
    for provider in server.upstream:
        if provider.kind == "oidc" and not provider.issuer:
            problems.append(f'upstream {provider.name!r}: an oidc provider needs issuer = "https://..."')
        if problem := secret_problem(
            f"upstream {provider.name!r}", provider.client_secret_env, provider.client_secret_file
        ):
            problems.append(problem)
    issuers = [issuer.name for issuer in settings.resource.issuers]
    if len(set(issuers)) != len(issuers) or set(issuers) & {*names, "dev"}:
        problems.append(
            "each [[resource.issuers]] needs its own name, distinct from the upstream providers' and 'dev': "
            "subjects are <name>:<user>, so a shared name would let one issuer's users pass for another's"
        )
    for issuer in settings.resource.issuers:
        env, file = issuer.introspection_client_secret_env, issuer.introspection_client_secret_file
        if issuer.introspection_client_id is not None:
            owner = f"issuer {issuer.name!r} (introspection)"
            if problem := secret_problem(owner, env, file, "introspection_client_secret"):
                problems.append(problem)
        elif env or file:
            problems.append(
                f"issuer {issuer.name!r}: introspection needs both introspection_client_id and a secret "
                "(introspection_client_secret_env or introspection_client_secret_file)"
            )
    if settings.worker.secret_env:
        if problem := settings.worker.secret_problem():
            problems.append(problem)
    elif settings.worker.only:
        problems.append("worker.only needs worker.secret_env")
    problems += _key_problems(settings)
    problems += settings.store.problems()
    problems += settings.metrics.problems() + settings.tracing.problems() + settings.limits.problems()
    problems += settings.gateway.problems()
    problems += _connection_problems(settings)
    if settings.metrics.enabled and settings.metrics.port == settings.port:
        problems.append(
            f"metrics.port is the MCP port ({settings.port}): choose another, or unset it to serve "
            f"metrics at {settings.metrics.path} on the MCP port"
        )
    problems += _shared_store_problems(settings)
    if settings.authenticated and not settings.binds_loopback and settings.public_url is None:
        problems.append(
            "authentication needs public_url (e.g. https://mcp.example.com) when it is reachable "
            "from other machines: issuer and resource identifiers must not come from request headers."
        )
    if not settings.binds_loopback and not settings.allowed_hosts and settings.public_url is None:
        problems.append(
            f"host = {settings.host!r}{settings.where('host')} needs allowed_hosts (the names clients use to reach "
            "this server, e.g. ['mcp.example.com']) so that DNS-rebinding protection can check the Host header."
        )
    return problems


def _connection_problems(settings: Settings) -> list[str]:
    if not settings.connections:
        return []
    problems = [problem for connection in settings.connections for problem in connection.problems()]
    names = [connection.name for connection in settings.connections]
    signs_in = {provider.name for provider in settings.authorization_server.upstream}
    if len(set(names)) != len(names) or set(names) & signs_in:
        problems.append(
            "each [[connections]] needs its own name, distinct from the sign-in providers' "
            "([[authorization_server.upstream]]): tools name the one they need"
        )
    if not settings.authorization_server.enabled:
        problems.append(
            "[[connections]] needs authorization_server.enabled = true: users connect accounts on Bastion's own "
            "pages, signed in through its authorization server"
        )
    if settings.state_secret is None:
        problems.append(
            "[[connections]] needs state_secret (BASTION_STATE_SECRET): connected accounts' tokens are encrypted "
            f"under a key derived from it, which must outlive restarts (generate one with {GENERATE})"
        )
    return problems


def _key_problems(settings: Settings) -> list[str]:
    """Signing keys set in the configuration must be as hard to guess as the worker secret."""
    keys = [
        ("state_secret (BASTION_STATE_SECRET)", settings.state_secret),
        (
            "authorization_server.cookie_secret (BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET)",
            settings.authorization_server.cookie_secret,
        ),
    ]
    found = [weakness(key.get_secret_value(), label) for label, key in keys if key is not None]
    return [problem for problem in found if problem]


def _shared_store_problems(settings: Settings) -> list[str]:
    """Instances sharing a store must sign with the same keys: a per-process random key would make instance B
    refuse the request state and approvals cookie that instance A issued."""
    if not settings.shared_by_processes:
        return []
    backend = settings.store.backend
    keys = [
        ("state_secret", settings.state_secret, "the request state of multi-round-trip calls"),
        ("authorization_server.cookie_secret", settings.authorization_server.cookie_secret, "the approvals cookie"),
    ]
    if not settings.store.shared:  # workers on one SQLite file; `bastion serve --workers` draws these for them
        return [
            f"workers = {settings.workers} processes share {settings.store.path}, so {name} must be set: it signs "
            f"{what}, and with a random key per process one worker refuses what another issued (bastion serve "
            f"--workers draws one for its workers; else generate one with {GENERATE})"
            for name, value, what in keys
            if value is None
        ]
    return [
        f"backend = {backend!r} is shared by every instance, so {name} must be set, the same on each: it signs "
        f"{what}, and with a random key per process one instance refuses what another issued "
        f"(generate one with {GENERATE})"
        for name, value, what in keys
        if value is None
    ]
