"""OAuth clients: validating registrations (RFC 7591), looking clients up, authenticating them at /token.

Client ids and secrets are always generated here, never taken from the caller; secrets are stored only as
hashes and shown once, in the registration response.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..security.crypto import new_id, new_token, same, token_hash
from ..store import Commit, Store, keys
from . import redirects
from .client_keys import jwks_problem
from .errors import OAuthError, invalid_client, invalid_request

AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token")
TEXT_FIELDS = {"client_name": 200, "software_id": 200, "software_version": 100}
URL_FIELDS = ("client_uri", "logo_uri", "tos_uri", "policy_uri")


@dataclass
class Client:
    client_id: str
    redirect_uris: list[str]
    token_endpoint_auth_method: str = "none"
    grant_types: list[str] = field(default_factory=lambda: list(GRANT_TYPES))
    application_type: str = "native"
    client_name: str | None = None
    client_uri: str | None = None
    logo_uri: str | None = None
    tos_uri: str | None = None
    policy_uri: str | None = None
    scope: str | None = None
    software_id: str | None = None
    software_version: str | None = None
    secret_hash: str | None = None
    issued_at: int = 0
    expires_at: int | None = None
    metadata_document: bool = False  # came from a Client ID Metadata Document, not a registration

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Client:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in record.items() if k in known})

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def public_metadata(self) -> dict[str, Any]:
        """What the registration response shows (never the secret's hash)."""
        shown = {
            k: v
            for k, v in self.record().items()
            if k not in ("secret_hash", "issued_at", "expires_at", "metadata_document")
        }
        shown["client_id_issued_at"] = self.issued_at
        shown["response_types"] = ["code"]
        return shown

    def redirect_for(self, requested: str | None) -> str | None:
        """The registered redirect URI a request names (or the only one, when it names none)."""
        if requested is None:
            return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None
        for registered in self.redirect_uris:
            if redirects.matches(registered, requested):
                return requested
        return None


EXPIRY_GRACE = 7 * 86400  # seconds an expired registration is kept (refused) for the sweep (admin/expiry.py)


def _metadata_error(description: str) -> OAuthError:
    return OAuthError("invalid_client_metadata", description)


def validate_registration(metadata: Any, supported_scopes: list[str]) -> Client:
    """A Client from registration metadata, or OAuthError naming what is wrong."""
    if not isinstance(metadata, dict):
        raise _metadata_error("the registration request must be a JSON object")
    uris = metadata.get("redirect_uris")
    if not isinstance(uris, list) or not uris or len(uris) > 20:
        raise OAuthError("invalid_redirect_uri", "redirect_uris must list 1 to 20 URIs")
    declared_type = metadata.get("application_type")
    if declared_type not in (None, "web", "native"):
        raise _metadata_error("application_type must be 'web' or 'native'")
    # Without a declaration, loopback-only clients are native apps (RFC 8252); anything else is web.
    application_type = declared_type or (
        "native" if all(isinstance(u, str) and redirects.is_loopback_http(u) for u in uris) else "web"
    )
    for uri in uris:
        reason = redirects.problem(uri, application_type)
        if reason:
            raise OAuthError("invalid_redirect_uri", reason)
    method = metadata.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise _metadata_error(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    grant_types = metadata.get("grant_types", list(GRANT_TYPES))
    if not isinstance(grant_types, list) or not grant_types or not set(grant_types) <= set(GRANT_TYPES):
        raise _metadata_error("grant_types may only include authorization_code and refresh_token")
    if "authorization_code" not in grant_types:
        raise _metadata_error("grant_types must include authorization_code")
    response_types = metadata.get("response_types", ["code"])
    if response_types != ["code"]:
        raise _metadata_error("response_types must be ['code']")
    client = Client(
        client_id="",
        redirect_uris=list(uris),
        token_endpoint_auth_method=method,
        grant_types=list(grant_types),
        application_type=application_type,
    )
    for name, limit in TEXT_FIELDS.items():
        value = metadata.get(name)
        if value is not None:
            if not isinstance(value, str) or len(value) > limit or not value.isprintable():
                raise _metadata_error(f"{name} must be printable text of at most {limit} characters")
            setattr(client, name, value)
    for name in URL_FIELDS:
        value = metadata.get(name)
        if value is not None:
            if not _https_url(value):
                raise _metadata_error(f"{name} must be an https URL")
            setattr(client, name, value)
    scope = metadata.get("scope")
    if scope is not None:
        if not isinstance(scope, str) or not set(scope.split()) <= set(supported_scopes):
            raise _metadata_error(f"scope may only include: {' '.join(supported_scopes)}")
        client.scope = scope
    keys_problem = jwks_problem(metadata)
    if keys_problem:
        raise _metadata_error(keys_problem)
    return client


def _https_url(value: object) -> bool:
    if not isinstance(value, str) or len(value) > redirects.MAX_URI or not value.isascii():
        return False
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and "@" not in parts.netloc


async def register(store: Store, client: Client, ttl_seconds: float) -> tuple[Client, str | None]:
    """Store a new client under a generated id; returns it and its secret (None for public clients)."""
    client.client_id = new_id(16)
    client.issued_at = int(time.time())
    client.expires_at = int(time.time() + ttl_seconds)
    secret = None
    if client.token_endpoint_auth_method != "none":
        secret = new_token(32)
        client.secret_hash = token_hash(secret)
    # Kept a while past its expiry (refused meanwhile: `expired`), so that the expiry sweep sees it, records it and
    # revokes its grants; the store drops it by itself if no sweep ever comes.
    await store.commit(Commit().set(keys.client(client.client_id), client.record(), ttl_seconds + EXPIRY_GRACE))
    return client, secret


@dataclass
class Credentials:
    """What a request to /token or /revoke presented to authenticate its client."""

    client_id: str
    secret: str | None
    method: str


def credentials(authorization: str | None, form: dict[str, str]) -> Credentials:
    basic = authorization is not None and authorization[:6].lower() == "basic "
    if authorization is not None and not basic:
        raise invalid_client("only HTTP Basic client authentication is accepted in the Authorization header")
    if basic:
        if "client_secret" in form:
            raise invalid_request("use one client authentication method, not two")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")  # type: ignore[index]
        except (binascii.Error, UnicodeDecodeError):
            raise invalid_client("malformed Basic credentials", basic=True) from None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise invalid_client("malformed Basic credentials", basic=True)
        basic_id, secret = unquote(raw_id), unquote(raw_secret)
        if "client_id" in form and form["client_id"] != basic_id:
            raise invalid_request("client_id in the body does not match the Basic credentials")
        return Credentials(basic_id, secret, "client_secret_basic")
    client_id = form.get("client_id")
    if not client_id:
        raise invalid_client("client authentication is required")
    if "client_secret" in form:
        return Credentials(client_id, form["client_secret"], "client_secret_post")
    return Credentials(client_id, None, "none")


def authenticate(client: Client | None, given: Credentials) -> Client:
    """The client, if it authenticated exactly as it registered; invalid_client otherwise."""
    basic = given.method == "client_secret_basic"
    if client is None:
        raise invalid_client("unknown client", basic)
    if given.method != client.token_endpoint_auth_method:
        raise invalid_client(f"this client authenticates with {client.token_endpoint_auth_method}", basic)
    if client.secret_hash is not None and (
        given.secret is None or not same(token_hash(given.secret), client.secret_hash)
    ):
        raise invalid_client("client authentication failed", basic)
    return client
