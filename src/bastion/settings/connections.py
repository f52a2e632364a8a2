"""[[connections]]: third-party accounts users connect for tools to act on their behalf (docs/connections.md).

Distinct from [[authorization_server.upstream]], which are the ways users sign in: a user who signed in with
Google may connect Slack, GitHub and Notion, each when a tool first needs it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .secrets import read_secret, secret_problem
from .values import https_url, short_name

PresetName = Literal["github", "google", "microsoft", "slack", "notion", "linear", "atlassian", "oauth2"]


class ConnectionSettings(BaseModel):
    """A provider users can connect. `preset` gives its endpoints and quirks; any endpoint may be overridden."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description='What tools name it: requires_upstream="<name>", ctx.upstream_token("<name>").')
    preset: PresetName = Field(
        description="github, google, microsoft, slack, notion, linear, atlassian; or oauth2 for any other OAuth 2.0 "
        "or OpenID Connect provider (issuer for discovery, or the endpoints)."
    )
    label: str | None = Field(None, description="Its name on the pages users see (default from the preset).")
    client_id: str = Field(description="This server's client id at the provider.")
    client_secret_env: str | None = Field(None, description="Environment variable holding the client secret.")
    client_secret_file: str | None = Field(None, description="File holding the client secret.")
    scopes: list[str] = Field(
        default_factory=list, description="Scopes always asked for, besides those the tool that asks needs."
    )
    issuer: str | None = Field(
        None, description="oauth2: the issuer, whose discovery document gives the endpoints not set here."
    )
    authorization_endpoint: str | None = Field(None, description="Overrides the preset's (or discovery's).")
    token_endpoint: str | None = Field(None, description="Overrides the preset's (or discovery's).")
    revocation_endpoint: str | None = Field(None, description="Overrides the preset's (or discovery's).")
    userinfo_endpoint: str | None = Field(None, description="Overrides the preset's (or discovery's).")
    tenant: str = Field("common", description="microsoft: the tenant (directory) id or domain.")
    client_auth: Literal["basic", "post"] | None = Field(
        None, description="How the client authenticates at the token endpoint (default from the preset: post)."
    )
    pkce: bool | None = Field(None, description="Send a PKCE challenge (default from the preset).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return short_name(value)

    @field_validator("issuer", "authorization_endpoint", "token_endpoint", "revocation_endpoint", "userinfo_endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else https_url(value)

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if not value or len(value) > 64 or not all(c.isascii() and (c.isalnum() or c in "-.") for c in value):
            raise ValueError("tenant must be a directory id or domain (letters, digits, '-' and '.')")
        return value

    def client_secret(self) -> str | None:
        return read_secret(self.client_secret_env, self.client_secret_file)

    def problems(self) -> list[str]:
        found = []
        if self.preset == "oauth2" and not self.issuer and not (self.authorization_endpoint and self.token_endpoint):
            found.append(
                f'connection {self.name!r}: preset = "oauth2" needs issuer = "https://..." (for discovery), or '
                "authorization_endpoint and token_endpoint"
            )
        named = self.client_secret_env or self.client_secret_file
        if named or self.preset != "oauth2":  # a generic provider may take a public client (PKCE, no secret)
            owner = f"connection {self.name!r}"
            if problem := secret_problem(owner, self.client_secret_env, self.client_secret_file):
                found.append(problem)
        return found
