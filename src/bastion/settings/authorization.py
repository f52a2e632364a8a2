"""[authorization_server]: Bastion's own OAuth 2.1 authorization server and the identity providers users sign in
with ([[authorization_server.upstream]])."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .errors import SettingsError
from .secrets import read_secret
from .values import https_url, short_name


class UpstreamSettings(BaseModel):
    """An identity provider users sign in with. Its client secret comes from the environment or a file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name: in the callback URL (/callback/<name>) and in subjects (<name>:<id>).")
    kind: Literal["oidc", "google", "github"] = Field(
        "oidc",
        description="oidc: any OpenID Connect issuer, found by discovery; google: Google (OIDC); github: a GitHub "
        "OAuth app.",
    )
    label: str | None = Field(None, description="Shown on the consent screen's button (default from kind or name).")
    issuer: str | None = Field(
        None,
        description="oidc: the issuer URL (required). github: the web URL, https://github.com by default (GitHub "
        "Enterprise: https://github.example.com). https, or http on loopback for development.",
    )
    api_url: str = Field(
        "https://api.github.com",
        description="github: the REST API URL (GitHub Enterprise: https://github.example.com/api/v3).",
    )
    client_id: str = Field(description="This server's client id at the provider.")
    client_secret_env: str | None = Field(None, description="Environment variable holding the client secret.")
    client_secret_file: str | None = Field(None, description="File holding the client secret.")
    scopes: list[str] | None = Field(
        None, description="Scopes to ask (default: openid profile email; github: read:user user:email)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return short_name(value)

    @field_validator("issuer", "api_url")
    @classmethod
    def _issuer(cls, value: str | None) -> str | None:
        return None if value is None else https_url(value).rstrip("/")

    def issuer_url(self) -> str:
        presets = {"github": "https://github.com", "google": "https://accounts.google.com"}
        if self.issuer:
            return self.issuer
        if self.kind in presets:
            return presets[self.kind]
        raise SettingsError(f'upstream {self.name!r}: an oidc provider needs issuer = "https://..."')

    def button_label(self) -> str:
        return self.label or {"github": "GitHub", "google": "Google"}.get(self.kind, self.name.capitalize())

    def requested_scopes(self) -> list[str]:
        if self.scopes is not None:
            return self.scopes
        return ["read:user", "user:email"] if self.kind == "github" else ["openid", "profile", "email"]

    def client_secret(self) -> str | None:
        return read_secret(self.client_secret_env, self.client_secret_file)


class AuthorizationServerSettings(BaseModel):
    """Bastion's own OAuth 2.1 authorization server."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Run the authorization server and require its tokens on the MCP endpoint.")
    scopes: list[str] = Field(
        default_factory=lambda: ["mcp"], description="Scopes clients may ask for (scopes_supported)."
    )
    registration: bool = Field(True, description="Accept dynamic client registration (RFC 7591) at /register.")
    registration_ttl_days: float = Field(90, gt=0, description="A dynamically registered client expires after this.")
    registrations_per_minute: int = Field(10, ge=1, description="Registrations accepted per client address per minute.")
    client_metadata_documents: bool = Field(
        True, description="Accept https URLs as client ids (Client ID Metadata Documents)."
    )
    metadata_document_ca_file: str | None = Field(
        None, description="Extra CA certificates (PEM) trusted when fetching client metadata documents."
    )
    metadata_document_hosts: dict[str, str] = Field(
        default_factory=dict,
        description="Hosts that serve client metadata documents from internal addresses, pinned to those addresses "
        '(e.g. {"clients.intranet" = "10.0.0.5"}); the private-address block is lifted for exactly these.',
    )
    access_token_seconds: int = Field(3600, ge=60, le=86400, description="Access token lifetime.")
    refresh_token_days: float = Field(30, gt=0, le=365, description="Refresh token lifetime (rotated on every use).")
    code_seconds: int = Field(300, ge=30, le=600, description="Authorization code lifetime (at most 10 minutes).")
    dev_login: bool = Field(
        False, description="Sign in with any name, no password: local development only (refused off loopback)."
    )
    upstream: list[UpstreamSettings] = Field(
        default_factory=list,
        description="The identity provider users sign in with ([[authorization_server.upstream]]).",
    )
    cookie_secret: SecretStr | None = Field(
        None,
        description="Key that signs the remembered-approvals cookie (at least 32 characters). Random per process "
        "if unset: approvals are then forgotten on restart, and not shared between instances.",
    )

    @field_validator("cookie_secret")
    @classmethod
    def _cookie_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("cookie_secret must be at least 32 characters (e.g. `openssl rand -base64 32`)")
        return value
