"""Who the user is: sign-in methods that finish an authorization transaction (dev login, upstream providers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from ..settings import UpstreamSettings
    from .upstream import UpstreamProvider


def upstream_provider(settings: UpstreamSettings, http: httpx.AsyncClient | None = None) -> UpstreamProvider:
    """The provider a [[authorization_server.upstream]] entry describes (calling it through `http`)."""
    secret = settings.client_secret() or ""
    if settings.kind == "github":
        from .github import GitHubProvider

        return GitHubProvider(
            settings.name,
            settings.issuer_url(),
            settings.api_url,
            settings.client_id,
            secret,
            settings.requested_scopes(),
            http,
        )
    from .oidc import OIDCProvider

    return OIDCProvider(
        settings.name, settings.issuer_url(), settings.client_id, secret, settings.requested_scopes(), http
    )
