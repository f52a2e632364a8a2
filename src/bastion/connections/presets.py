"""What each well-known provider's OAuth 2.0 looks like, as its own documentation describes it: endpoints, how
scopes are written, whether it takes PKCE, how the client authenticates and the token endpoint is spoken to,
where the token is in its answer, how a token is renewed and revoked.

A [[connections]] entry names one of these (`preset`) and may override any endpoint (GitHub Enterprise, a
Microsoft tenant, a stand-in for tests); `preset = "oauth2"` takes every endpoint from the entry or from its
issuer's discovery document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# How a token is revoked when the user disconnects:
#   rfc7009       POST the token (form) to revocation_endpoint, the client authenticating as at the token endpoint
#   bearer        POST to revocation_endpoint with the token as the bearer (Slack's auth.revoke, Linear)
#   github_grant  DELETE revocation_endpoint ({client_id} filled in; basic auth): the app's grant for that user
#   notion        POST {"token": ...} (JSON, basic auth) to revocation_endpoint
#   none          the provider has no revocation endpoint: the token is forgotten (the user may revoke it there)
Revocation = Literal["rfc7009", "bearer", "github_grant", "notion", "none"]


@dataclass(frozen=True)
class Preset:
    label: str
    authorization_endpoint: str
    token_endpoint: str
    revocation: Revocation = "rfc7009"
    revocation_endpoint: str | None = None
    userinfo_endpoint: str | None = None  # who the account is, shown on the account page (best effort)
    scope_separator: str = " "  # in the authorization request
    granted_separator: str | None = None  # in the token response, when it differs (GitHub: ",")
    scope_param: str = "scope"  # Slack asks for user-token scopes as user_scope
    pkce: bool = True
    client_auth: Literal["basic", "post"] = "post"  # how the client authenticates at the token endpoint
    json_body: bool = False  # the token endpoint takes JSON rather than a form
    token_in: str | None = None  # the member of the token response holding the user's token (Slack: authed_user)
    refresh_scope: str | None = None  # a scope without which no refresh token is issued (offline_access)
    scopes: bool = True  # False: the provider has no scopes (Notion: access is chosen on its own page)
    authorize_params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # sent with every token and revocation request


PRESETS: dict[str, Preset] = {
    "github": Preset(
        label="GitHub",
        authorization_endpoint="https://github.com/login/oauth/authorize",
        token_endpoint="https://github.com/login/oauth/access_token",
        revocation="github_grant",
        revocation_endpoint="https://api.github.com/applications/{client_id}/grant",
        userinfo_endpoint="https://api.github.com/user",
        granted_separator=",",
        authorize_params={"allow_signup": "false"},
        headers={"Accept": "application/json"},  # GitHub answers a form otherwise
    ),
    "google": Preset(
        label="Google",
        authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
        token_endpoint="https://oauth2.googleapis.com/token",
        revocation_endpoint="https://oauth2.googleapis.com/revoke",
        userinfo_endpoint="https://openidconnect.googleapis.com/v1/userinfo",
        # offline: a refresh token; consent: issued again on a reconnect; earlier grants kept in the new token.
        authorize_params={"access_type": "offline", "prompt": "consent", "include_granted_scopes": "true"},
    ),
    "microsoft": Preset(
        label="Microsoft",
        authorization_endpoint="https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token_endpoint="https://login.microsoftonline.com/common/oauth2/v2.0/token",
        revocation="none",  # Microsoft identity platform has no token revocation endpoint
        userinfo_endpoint="https://graph.microsoft.com/oidc/userinfo",
        refresh_scope="offline_access",
    ),
    "slack": Preset(
        label="Slack",
        authorization_endpoint="https://slack.com/oauth/v2/authorize",
        token_endpoint="https://slack.com/api/oauth.v2.access",
        revocation="bearer",
        revocation_endpoint="https://slack.com/api/auth.revoke",
        scope_separator=",",
        scope_param="user_scope",  # a user token, acting as the person, not the app's bot
        client_auth="basic",
        token_in="authed_user",
    ),
    "notion": Preset(
        label="Notion",
        authorization_endpoint="https://api.notion.com/v1/oauth/authorize",
        token_endpoint="https://api.notion.com/v1/oauth/token",
        revocation="notion",
        revocation_endpoint="https://api.notion.com/v1/oauth/revoke",
        pkce=False,
        client_auth="basic",
        json_body=True,
        scopes=False,
        authorize_params={"owner": "user"},
        headers={"Notion-Version": "2022-06-28"},
    ),
    "linear": Preset(
        label="Linear",
        authorization_endpoint="https://linear.app/oauth/authorize",
        token_endpoint="https://api.linear.app/oauth/token",
        revocation="bearer",
        revocation_endpoint="https://api.linear.app/oauth/revoke",
        scope_separator=",",
        authorize_params={"prompt": "consent"},
    ),
    "atlassian": Preset(
        label="Atlassian",
        authorization_endpoint="https://auth.atlassian.com/authorize",
        token_endpoint="https://auth.atlassian.com/oauth/token",
        revocation="none",  # users remove the app under their Atlassian account's connected apps
        userinfo_endpoint="https://api.atlassian.com/me",
        pkce=False,
        json_body=True,
        refresh_scope="offline_access",
        authorize_params={"audience": "api.atlassian.com", "prompt": "consent"},
    ),
}

PRESET_NAMES = (*PRESETS, "oauth2")
