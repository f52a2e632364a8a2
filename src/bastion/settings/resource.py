"""[resource]: the MCP endpoint as an OAuth protected resource, and the external authorization servers whose
tokens it accepts ([[resource.issuers]])."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .secrets import read_secret
from .values import https_url, short_name

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
