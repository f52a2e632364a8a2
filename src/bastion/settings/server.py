"""The top-level settings: where the server listens and how it serves MCP over HTTP.

They sit at the top of bastion.toml (no [server] table), so Settings inherits them rather than nesting them.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator

from .values import ip_networks, is_loopback_host


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    # Which settings came from BASTION_* variables (setting -> variable), for messages that must say so: a
    # variable left in a shell is easy to forget.
    _from_environment: dict[str, str] = PrivateAttr(default_factory=dict)

    def where(self, name: str) -> str:
        """ " (from BASTION_X)" when the top-level setting `name` came from that variable; "" otherwise."""
        variable = self._from_environment.get(name)
        return f" (from {variable})" if variable else ""

    host: str = Field("127.0.0.1", description="Address to bind. Loopback unless authentication is on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    path: str = Field("/mcp", description="Path of the MCP endpoint.")
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="HTTP processes serving on this machine (bastion serve --workers sets it); more than one shares "
        "the sqlite file (or a postgres or redis store) between them.",
    )
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
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as JSON lines with stable field names (docs/operations.md)."
    )
    access_log: bool = Field(
        True, description="One log line per HTTP request (logger bastion.access): status, duration, caller, MCP method."
    )
    public_url: str | None = Field(
        None,
        description="The URL clients reach this server at (issuer and resource identifiers), e.g. "
        "https://mcp.example.com. Required off loopback; on loopback the request's Host is used.",
    )

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies in front of this server: only requests "
        "from them may set the client address and scheme with X-Forwarded-For and X-Forwarded-Proto. Nobody by "
        "default.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: list[str]) -> list[str]:
        try:
            return ip_networks(value, "the proxies'")
        except ValueError as exc:
            raise ValueError(f"{exc} (a wildcard would let any client choose its own address)") from None

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
