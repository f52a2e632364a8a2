"""One Settings model, read from bastion.toml and BASTION_* environment variables, validated at start-up.

Every option has a safe default. A typo or an unsafe combination stops the server with a message that says
what to change, rather than being ignored.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

ENV_PREFIX = "BASTION_"
# Environment variables with the prefix that are not settings themselves.
_NOT_SETTINGS = {"BASTION_CONFIG"}


class SettingsError(ValueError):
    """Settings that cannot be used; the message lists each problem and how to fix it."""


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


class PolicySettings(BaseModel):
    """Scopes needed to see and use things, by glob, on top of each function's own `scopes=[...]`."""

    model_config = ConfigDict(extra="forbid")

    tools: dict[str, list[str]] = Field(
        default_factory=dict, description='Tool name globs to scopes, e.g. {"delete_*" = ["notes:admin"]}.'
    )
    resources: dict[str, list[str]] = Field(default_factory=dict, description="Resource URI globs to scopes.")
    prompts: dict[str, list[str]] = Field(default_factory=dict, description="Prompt name globs to scopes.")


class WorkerSettings(BaseModel):
    """Arcade-compatible worker endpoints, on when a secret is configured."""

    model_config = ConfigDict(extra="forbid")

    secret_env: str | None = Field(None, description="Environment variable holding the shared worker secret.")
    max_token_seconds: int = Field(300, ge=10, le=86400, description="Longest lifetime a worker token may have.")
    allow_tokens_without_exp: bool = Field(
        False, description="Compatibility: accept tokens without exp, as Arcade's worker does (logs a warning)."
    )
    only: bool = Field(False, description="Serve only the worker API: no /mcp and no OAuth routes.")

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) if self.secret_env else None

    def secret_problem(self) -> str | None:
        """Why the configured secret cannot be used (unset, or too easy to guess), in one line; None if it can.
        `serve` and `bastion worker-token` both refuse with this line."""
        if not self.secret_env:
            return None
        from .security.secret_strength import weakness

        return weakness(self.secret(), f"the worker secret in {self.secret_env} (named by worker.secret_env)")


PRESETS = ("generic", "workos", "auth0", "descope", "keycloak", "okta", "entra")
# Signature algorithms an external issuer may use. Never "none", never HMAC: a resource server holds only public
# keys, and an HMAC "keyed" with one is the classic algorithm-confusion forgery.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class IssuerSettings(BaseModel):
    """An external authorization server whose access tokens /mcp accepts ([[resource.issuers]])."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short name, in subjects (<name>:<sub>) and logs.")
    issuer: str = Field(
        description="The issuer URL exactly as its tokens' iss says (metadata is discovered from it). https, or "
        "http on loopback for development."
    )
    preset: Literal["generic", "workos", "auth0", "descope", "keycloak", "okta", "entra"] = Field(
        "generic", description="Where this provider puts scopes, client and user in its tokens (docs/authorization.md)."
    )
    audience: str | None = Field(
        None,
        description="The aud the issuer puts in tokens for this server, when it cannot be the resource URL (e.g. "
        "Entra's api://...). Default: the MCP endpoint's URL.",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: list(ASYMMETRIC_ALGORITHMS),
        description="Signature algorithms accepted (asymmetric only); each key is further held to its own alg.",
    )
    jwks_uri: str | None = Field(None, description="Where the signing keys are, if not in the issuer's metadata.")
    introspection_client_id: str | None = Field(
        None, description="Client id for RFC 7662 introspection of opaque tokens (unset: only JWTs are accepted)."
    )
    introspection_client_secret_env: str | None = Field(
        None, description="Environment variable holding the introspection client secret."
    )
    introspection_client_secret_file: str | None = Field(None, description="File holding the introspection secret.")
    scope_claims: list[str] | None = Field(
        None, description="Claims holding granted scopes (default from preset; generic: scope, scp)."
    )
    subject_claim: str | None = Field(
        None, description="Claim naming the user (default from preset, falling back to sub)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return short_name(value)

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Unlike an upstream's, the issuer keeps a trailing slash: iss is compared exactly (Auth0 ends in "/").
        return None if value is None else https_url(value)

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        wrong = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if wrong or not value:
            raise ValueError(f"algorithms must be among {', '.join(ASYMMETRIC_ALGORITHMS)} (not {', '.join(wrong)})")
        return value

    def introspection_secret(self) -> str | None:
        return read_secret(self.introspection_client_secret_env, self.introspection_client_secret_file)


class ResourceSettings(BaseModel):
    """The MCP endpoint as an OAuth protected resource: which tokens it takes, and what every caller needs."""

    model_config = ConfigDict(extra="forbid")

    required_scopes: list[str] = Field(
        default_factory=list,
        description="Scopes every token needs to reach the MCP endpoint; a 401 asks for them, so clients start "
        "with these and step up per tool.",
    )
    issuers: list[IssuerSettings] = Field(
        default_factory=list,
        description="External authorization servers whose tokens are accepted ([[resource.issuers]]).",
    )


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "memory"] = Field("sqlite", description="Where grants, tokens and clients live.")
    path: str = Field("bastion.db", description="The SQLite file.")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="Address to bind. Loopback unless authentication is on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    path: str = Field("/mcp", description="Path of the MCP endpoint.")
    insecure_no_auth: bool = Field(
        False, description="Serve without authentication on a non-loopback address. Never in production."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header values accepted besides loopback names (DNS rebinding)."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Browser origins accepted besides loopback ones, e.g. https://app.example"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted (413 above).")
    max_header_bytes: int = Field(
        32_768,
        ge=8192,
        le=1_048_576,
        description="Largest request head (request line and headers) accepted (431 above); room for an 8 KB token "
        "and a few cookies.",
    )
    tool_timeout_seconds: float | None = Field(
        300.0, gt=0, description="A tool still running after this is cancelled and reported as failed."
    )
    tool_threads: int = Field(
        64, ge=1, le=1024, description="Worker threads for plain-function (non-async) tools, resources and prompts."
    )
    mask_error_details: bool = Field(
        True, description="Hide unexpected exceptions' text from clients (ToolError messages always show)."
    )
    stateful: bool = Field(True, description="Keep sessions (Mcp-Session-Id) for 2025-06-18 and 2025-11-25 clients.")
    json_response: bool = Field(
        False, description="Answer requests with JSON only, never SSE (no progress or logging mid-call)."
    )
    session_idle_seconds: float = Field(3600.0, gt=0, description="A session unused this long is closed.")
    max_sessions: int = Field(10_000, ge=1, description="Open legacy sessions allowed at once (503 above).")
    state_secret: SecretStr | None = Field(
        None,
        description="Key that signs multi-round-trip request state. Set it when several instances share clients; "
        "a random key per process otherwise.",
    )
    env_file: str | None = Field(".env", description="File from which declared tool secrets are read.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Server log level (stderr).")
    public_url: str | None = Field(
        None,
        description="The URL clients reach this server at (issuer and resource identifiers), e.g. "
        "https://mcp.example.com. Required off loopback; on loopback the request's Host is used.",
    )
    authorization_server: AuthorizationServerSettings = Field(default_factory=AuthorizationServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    resource: ResourceSettings = Field(default_factory=ResourceSettings)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?#") or (value.endswith("/") and value != "/"):
            raise ValueError("path must start with '/', have no query or fragment, and no trailing '/'")
        return value

    @field_validator("state_secret")
    @classmethod
    def _state_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("state_secret must be at least 32 characters (e.g. `openssl rand -base64 32`)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("public_url must be an absolute http(s) URL without query or fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("public_url must use https unless it is a loopback address")
        return value.rstrip("/")

    @property
    def binds_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def authenticated(self) -> bool:
        return self.authorization_server.enabled or bool(self.resource.issuers)

    def check(self) -> None:
        """Refuse combinations that would expose an unauthenticated server."""
        problems: list[str] = []
        if not self.binds_loopback and not self.authenticated and not self.insecure_no_auth:
            problems.append(
                f"host = {self.host!r} would serve MCP without authentication beyond this machine. Bind "
                "127.0.0.1 for local development, or pass --insecure-no-auth (insecure_no_auth = true) if you "
                "really mean to expose unauthenticated tools."
            )
        server = self.authorization_server
        if server.enabled and not server.dev_login and not server.upstream:
            problems.append(
                "authorization_server.enabled has no sign-in method, so every sign-in would fail: add an identity "
                "provider ([[authorization_server.upstream]], see docs/authorization.md), or dev_login = true for "
                "local development"
            )
        if self.authorization_server.dev_login and not self.binds_loopback:
            problems.append(
                "authorization_server.dev_login signs anyone in without a password: it works only on a loopback "
                "host. Configure an identity provider instead."
            )
        upstream = self.authorization_server.upstream
        names = [provider.name for provider in upstream]
        if len(set(names)) != len(names) or "dev" in names:
            problems.append("each [[authorization_server.upstream]] needs its own name (and 'dev' is dev login's)")
        for provider in upstream:
            if provider.kind == "oidc" and not provider.issuer:
                problems.append(f'upstream {provider.name!r}: an oidc provider needs issuer = "https://..."')
            if not provider.client_secret():
                problems.append(
                    f"upstream {provider.name!r} has no client secret: set client_secret_env to the name of an "
                    "environment variable that holds it, or client_secret_file"
                )
        issuers = [issuer.name for issuer in self.resource.issuers]
        if len(set(issuers)) != len(issuers) or set(issuers) & {*names, "dev"}:
            problems.append(
                "each [[resource.issuers]] needs its own name, distinct from the upstream providers' and 'dev': "
                "subjects are <name>:<user>, so a shared name would let one issuer's users pass for another's"
            )
        for issuer in self.resource.issuers:
            if (issuer.introspection_client_id is None) != (issuer.introspection_secret() is None):
                problems.append(
                    f"issuer {issuer.name!r}: introspection needs both introspection_client_id and a secret "
                    "(introspection_client_secret_env or introspection_client_secret_file)"
                )
        if self.worker.secret_env:
            if problem := self.worker.secret_problem():
                problems.append(problem)
        elif self.worker.only:
            problems.append("worker.only needs worker.secret_env")
        problems += self._key_problems()
        if self.authenticated and not self.binds_loopback and self.public_url is None:
            problems.append(
                "authentication needs public_url (e.g. https://mcp.example.com) when it is reachable "
                "from other machines: issuer and resource identifiers must not come from request headers."
            )
        if not self.binds_loopback and not self.allowed_hosts and self.public_url is None:
            problems.append(
                f"host = {self.host!r} needs allowed_hosts (the names clients use to reach this server, e.g. "
                "['mcp.example.com']) so that DNS-rebinding protection can check the Host header."
            )
        if problems:
            raise SettingsError("\n".join(problems))

    def _key_problems(self) -> list[str]:
        """Signing keys set in the configuration must be as hard to guess as the worker secret."""
        from .security.secret_strength import weakness

        keys = [
            ("state_secret (BASTION_STATE_SECRET)", self.state_secret),
            (
                "authorization_server.cookie_secret (BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET)",
                self.authorization_server.cookie_secret,
            ),
        ]
        found = [weakness(key.get_secret_value(), label) for label, key in keys if key is not None]
        return [problem for problem in found if problem]

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(dotted name, environment variable, default, description) for every setting, sections included."""
        rows: list[tuple[str, str, Any, str]] = []

        def walk(model: type[BaseModel], prefix: str) -> None:
            for name, field in model.model_fields.items():
                dotted = f"{prefix}{name}"
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                    walk(field.annotation, f"{dotted}.")
                    continue
                env = ENV_PREFIX + dotted.replace(".", "__").upper()
                rows.append((dotted, env, field.get_default(call_default_factory=True), field.description or ""))

        walk(cls, "")
        return rows

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults, then the TOML file, then BASTION_* variables, then explicit overrides (CLI flags)."""
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        source = "defaults"
        path = config_file or env.get("BASTION_CONFIG")
        if path is None and Path("bastion.toml").is_file():
            path = "bastion.toml"
        if path is not None:
            source = str(path)
            try:
                with open(path, "rb") as f:
                    data.update(tomllib.load(f))
            except FileNotFoundError:
                raise SettingsError(f"config file {path} does not exist") from None
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{path} is not valid TOML: {exc}") from None
        unknown = []
        for key, value in env.items():
            if not key.startswith(ENV_PREFIX) or key in _NOT_SETTINGS:
                continue
            # BASTION_SECTION__NAME sets [section] name.
            names = key.removeprefix(ENV_PREFIX).lower().split("__")
            field = _field(names)
            if field is None:
                unknown.append(key)
                continue
            target = data
            for part in names[:-1]:
                target = target.setdefault(part, {})
            try:
                target[names[-1]] = _from_env(field, value)
            except ValueError as exc:
                raise SettingsError(f"{key} {exc}") from None
        if unknown:
            raise SettingsError(
                f"unknown setting(s) in the environment: {', '.join(sorted(unknown))}. "
                f"Known: {', '.join(env for _, env, _, _ in cls.describe())}"
            )
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(_explain(exc, source)) from None


def _field(path: list[str]) -> Any:
    model: Any = Settings
    field = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        model = field.annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        return None  # a whole section cannot be set from one variable
    return field


def _from_env(field: Any, value: str) -> Any:
    items = get_args(field.annotation)
    if items and isinstance(items[0], type) and issubclass(items[0], BaseModel):
        # A list of tables ([[resource.issuers]]): JSON in a variable, for containers configured by environment.
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ValueError('must be a JSON list of tables, e.g. [{"name": "corp", ...}]') from None
    annotation = str(field.annotation)
    if "dict" in annotation:  # name=value,name=value
        return dict(item.strip().split("=", 1) for item in value.split(",") if "=" in item)
    if "list" in annotation:
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _explain(exc: ValidationError, source: str) -> str:
    lines = [f"invalid settings (from {source} and BASTION_* variables):"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {where}: not a setting; known settings are {', '.join(Settings.model_fields)}")
        else:
            field = Settings.model_fields.get(str(error["loc"][0])) if error["loc"] else None
            hint = f" ({field.description})" if field and field.description else ""
            lines.append(f"  {where}: {error['msg']}{hint}")
    return "\n".join(lines)


def read_secret(env: str | None, file: str | None) -> str | None:
    """A secret from the named environment variable, else from the named file (trimmed), else None."""
    if env:
        return os.environ.get(env)
    if file:
        return Path(file).read_text().strip()
    return None


def short_name(value: str) -> str:
    if not value or len(value) > 32 or not all(c.isascii() and (c.isalnum() or c == "-") for c in value):
        raise ValueError("name must be 1-32 letters, digits or '-'")
    return value.lower()


def https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https (plain http only on loopback, for development)")
    return value


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
