"""The authorization server's endpoints: metadata, register, authorize, token, revoke.

Identity is someone else's job: /authorize validates the request, opens a transaction (transactions.py), shows
the consent screen, and hands the browser to an Authenticator (dev login, an upstream provider), which completes
the transaction through its SignInDesk once the user has signed in.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..ops.audit import AuditEvent, bind_request
from ..ops.logs import clean
from ..public_url import base_path, base_url
from ..ratelimit import RateLimiter
from ..security.crypto import new_key
from ..security.fetch import SafeFetcher
from ..settings import AuthorizationServerSettings
from ..store import Store, keys
from . import forms
from .approvals import Approvals
from .cimd import ClientLookupError, MetadataDocuments, is_document_url
from .client_redirects import consent_required, error_to_client
from .clients import Client, authenticate, credentials, register, validate_registration
from .consent import ConsentScreen
from .errors import NO_STORE, OAuthError, invalid_client, invalid_request
from .grants import Grants, Lifetimes
from .pages import error_page
from .quoting import some
from .transactions import Transactions, consent_url
from .unavailable import answering_store_faults, json_answer, page_answer

_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
MAX_STATE = 2048
# A scope parameter is refused beyond these (or beyond what the whole of scopes_supported needs, if more).
MAX_SCOPE_CHARS = 2048
MAX_SCOPES = 64
# prompt values understood (OpenID Connect Core 3.1.2.1); others are ignored, as that specification allows.
PROMPTS = ("none", "login", "consent", "select_account")
# Any of these makes the user see the consent screen, where they choose how to sign in, even if remembered.
_INTERACTIVE_PROMPTS = {"login", "consent", "select_account"}


class Authenticator(Protocol):
    """Signs the user in for an authorization transaction, then completes it through its SignInDesk."""

    def routes(self) -> list[BaseRoute]: ...

    name: str  # "dev", or the upstream provider's name (the prefix of the subjects it signs in)
    label: str  # on the consent screen's button

    async def begin(self, request: Request, transaction: str) -> Response: ...

    async def form_target(self, request: Request) -> str | None: ...


def document_fetcher(settings: AuthorizationServerSettings) -> SafeFetcher:
    """The fetcher for client metadata documents, with any internal hosts and extra CAs the settings name."""
    context = None
    if settings.metadata_document_ca_file:
        context = ssl.create_default_context()
        context.load_verify_locations(settings.metadata_document_ca_file)
    return SafeFetcher(ssl_context=context, pinned_hosts=settings.metadata_document_hosts)


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, headers={**NO_STORE, **(headers or {})})


def oauth_error(error: OAuthError) -> JSONResponse:
    return json_response(error.body(), error.status, error.headers)


def lifetimes(settings: AuthorizationServerSettings) -> Lifetimes:
    return Lifetimes(settings.code_seconds, settings.access_token_seconds, int(settings.refresh_token_days * 86400))


def approvals(settings: AuthorizationServerSettings) -> Approvals:
    """Remembered approvals, signed with the configured cookie secret (or a key that lasts this process)."""
    secret = settings.cookie_secret.get_secret_value().encode() if settings.cookie_secret else None
    return Approvals(secret or new_key())


def metadata_documents(settings: AuthorizationServerSettings) -> MetadataDocuments | None:
    return (
        MetadataDocuments(document_fetcher(settings), settings.scopes) if settings.client_metadata_documents else None
    )


class AuthorizationServer:
    def __init__(
        self,
        settings: AuthorizationServerSettings,
        store: Store,
        grants: Grants,
        transactions: Transactions,
        approvals: Approvals,
        authenticators: Sequence[Authenticator],
        documents: MetadataDocuments | None,
        public_url: str | None,
        resource_path: str,
        audit: Callable[[AuditEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.audit = audit  # told of registrations, tokens issued, refreshed, refused and revoked (ops/audit.py)
        self.store = store
        self.grants = grants
        self.transactions = transactions
        self.approvals = approvals
        # Sign-in methods by name ("dev", or an upstream provider's name), offered on the consent screen.
        self.authenticators: dict[str, Authenticator] = {method.name: method for method in authenticators}
        self.documents = documents
        self.public_url = public_url
        self.resource_path = resource_path
        self.registrations = RateLimiter(store, settings.registrations_per_minute, 60.0)  # shared by every instance
        self.consent = ConsentScreen(self)

    # --- identifiers -----------------------------------------------------------------------------------------
    def issuer(self, request: Request) -> str:
        return base_url(request.scope, self.public_url)

    def resource(self, request: Request) -> str:
        return base_url(request.scope, self.public_url) + self.resource_path

    def routes(self) -> list[BaseRoute]:
        # An issuer with a path has its metadata at the path-suffixed well-known URL (RFC 8414 section 3.1).
        suffix = base_path(self.public_url)
        api: list[BaseRoute] = [
            Route(f"/.well-known/oauth-authorization-server{suffix}", self.metadata, methods=["GET"]),
            Route(f"/.well-known/openid-configuration{suffix}", self.metadata, methods=["GET"]),
            *([Route("/.well-known/oauth-authorization-server", self.metadata, methods=["GET"])] if suffix else []),
            Route("/token", self.token, methods=["POST"]),
            Route("/revoke", self.revoke, methods=["POST"]),
        ]
        if self.settings.registration:
            api.append(Route("/register", self.register, methods=["POST"]))
        browser: list[BaseRoute] = [Route("/authorize", self.authorize, methods=["GET"]), *self.consent.routes()]
        for authenticator in self.authenticators.values():
            browser += authenticator.routes()
        # A store that cannot answer gets a 503 from every route, in the form its caller reads.
        return [*answering_store_faults(api, json_answer), *answering_store_faults(browser, page_answer)]

    # --- metadata (RFC 8414) ---------------------------------------------------------------------------------
    async def metadata(self, request: Request) -> Response:
        issuer = self.issuer(request)
        body: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "revocation_endpoint": f"{issuer}/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": self.settings.scopes,
            "authorization_response_iss_parameter_supported": True,
            # Request objects (RFC 9101) and pushed requests (RFC 9126) are not supported: plain parameters only.
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "prompt_values_supported": list(PROMPTS),
            "client_id_metadata_document_supported": self.settings.client_metadata_documents,
        }
        if self.settings.registration:
            body["registration_endpoint"] = f"{issuer}/register"
        return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})

    # --- clients ---------------------------------------------------------------------------------------------
    async def client(self, client_id: str) -> Client | None:
        """A registered client, or one described by its metadata document (ClientLookupError if unusable)."""
        if not client_id or len(client_id) > 2000:
            return None
        if is_document_url(client_id):
            return await self.documents(client_id) if self.documents is not None else None
        record = await self.store.get(keys.client(client_id))
        client = Client.from_record(record) if record else None
        return client if client is not None and not client.expired(time.time()) else None

    async def register(self, request: Request) -> Response:
        self.audit_request(request)
        address = request.client.host if request.client else "unknown"
        if not await self.registrations.allow(address):
            retry = {"Retry-After": str(self.registrations.retry_after())}
            error = OAuthError("temporarily_unavailable", "too many registrations; try again in a minute", 429, retry)
            return oauth_error(error)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return oauth_error(OAuthError("invalid_client_metadata", "the body must be application/json"))
        try:
            # Read at most the limit: 413 invalid_request above it, before a byte too many is held.
            body = await forms.bounded_body(request, forms.MAX_FORM_BYTES)
            metadata = orjson.loads(body)
            client = validate_registration(metadata, self.settings.scopes)
        except orjson.JSONDecodeError:
            return oauth_error(OAuthError("invalid_client_metadata", "the body is not valid JSON"))
        except OAuthError as exc:
            return oauth_error(exc)
        ttl = self.settings.registration_ttl_days * 86400
        client, secret = await register(self.store, client, ttl)
        response = client.public_metadata()
        if secret is not None:
            response["client_secret"] = secret
            response["client_secret_expires_at"] = client.expires_at
        registered = AuditEvent("client.registered", client_id=client.client_id, details={"public": secret is None})
        self.record_event(registered)
        return json_response(response, 201)

    # --- authorize -------------------------------------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        try:
            params = forms.query(request)
        except OAuthError as exc:
            return error_page(exc.description)
        client_id = params.get("client_id", "")
        try:
            client = await self.client(client_id)
        except ClientLookupError as exc:
            return error_page(str(exc))
        if client is None:
            return error_page("This application is not registered with this server (unknown client_id).")
        redirect_uri = client.redirect_for(params.get("redirect_uri"))
        if redirect_uri is None:
            return error_page("The redirect_uri does not match any registered for this application.")
        # From here on the client and where to send it back are known: errors go back to it.
        issuer = self.issuer(request)
        state = params.get("state")
        try:
            if state is not None and len(state) > MAX_STATE:
                state = None
                raise invalid_request("state is too long")
            request_record = self._authorization_request(request, params, client, redirect_uri)
        except OAuthError as exc:
            return error_to_client(redirect_uri, exc.error, exc.description, state, issuer)
        # A remembered approval skips the consent screen, but only for a navigation the user made themselves,
        # and not when the client asks for the user to be asked (prompt=consent, login or select_account).
        request_record["remembered_subject"] = None
        prompts = set(request_record["prompt"])
        if request.headers.get("sec-fetch-site") in ("same-origin", "none") and not prompts & _INTERACTIVE_PROMPTS:
            request_record["remembered_subject"] = self.approvals.subject_for(
                request.scope, client.client_id, redirect_uri, request_record["resource"]
            )
        remembered = request_record["remembered_subject"]
        method = str(remembered).split(":", 1)[0] if remembered else None
        if "none" in prompts and method not in self.authenticators:
            # prompt=none: no page may be shown, and only the consent screen could go on from here.
            return consent_required(redirect_uri, state, issuer)
        transaction = await self.transactions.open(request_record)
        if method in self.authenticators:
            # Back to the provider this user signed in with last time.
            return await self.begin_sign_in(request, transaction, str(method))
        return consent_url(transaction)

    async def sign_in_targets(self, request: Request) -> list[str | None]:
        """Where approving may send the browser (other origins for upstream providers), for the consent CSP."""
        return [await authenticator.form_target(request) for authenticator in self.authenticators.values()]

    async def begin_sign_in(self, request: Request, transaction: str, method: str) -> Response:
        authenticator = self.authenticators.get(method)
        if authenticator is None:
            return error_page("That sign-in method is not offered here.")
        return await authenticator.begin(request, transaction)

    def _authorization_request(
        self, request: Request, params: dict[str, str], client: Client, redirect_uri: str
    ) -> dict[str, Any]:
        # First: a request object may carry every other parameter, so nothing else can be judged without it.
        if "request" in params:
            raise OAuthError("request_not_supported", "request objects (the request parameter) are not supported")
        if "request_uri" in params:
            raise OAuthError("request_uri_not_supported", "request_uri (by reference or pushed) is not supported")
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if not challenge:
            raise invalid_request("PKCE is required: send code_challenge and code_challenge_method=S256")
        if method != "S256":
            raise invalid_request("code_challenge_method must be S256 (plain is not accepted)")
        if not _CHALLENGE.match(challenge):
            raise invalid_request("code_challenge must be 43-128 unreserved characters")
        resource = self.resource(request)
        requested_resource = params.get("resource")
        if requested_resource is not None and requested_resource != resource:
            raise OAuthError("invalid_target", f"this server issues tokens only for {resource}")
        scopes = self._scopes(params.get("scope"), client)
        prompt = _prompts(params.get("prompt"))
        return {
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "state": params.get("state"),
            "code_challenge": challenge,
            "resource": resource,
            "scopes": scopes,
            "issuer": self.issuer(request),
            "created_at": time.time(),
            "csrf": [],
            "approved": False,
            "prompt": prompt,
        }

    def _scopes(self, requested: str | None, client: Client) -> list[str]:
        allowed = client.scope.split() if client.scope else self.settings.scopes
        if requested is None or not requested.strip():
            return list(allowed)
        scopes = list(dict.fromkeys(self._scope_list(requested)))
        unknown = [s for s in scopes if s not in allowed]
        if unknown:
            raise OAuthError("invalid_scope", f"unknown or not allowed scope(s): {some(unknown)}")
        return scopes

    def _scope_list(self, requested: str) -> list[str]:
        """The tokens of a scope parameter, refused (invalid_scope) past the size any real request needs."""
        offered = self.settings.scopes
        scopes = requested.split(" ")
        if len(requested) > max(MAX_SCOPE_CHARS, 2 * len(" ".join(offered))) or len(scopes) > max(
            MAX_SCOPES, 2 * len(offered)
        ):
            raise OAuthError("invalid_scope", "the scope parameter is too long")
        return requested.split()

    # --- token -----------------------------------------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        self.audit_request(request)
        client_id = grant_type = None
        try:
            params = await forms.form(request)
            client_id, grant_type = params.get("client_id"), params.get("grant_type")
            client = await self._authenticated_client(request, params)
            grant_type = params.get("grant_type")
            if grant_type not in client.grant_types:
                if grant_type in ("authorization_code", "refresh_token"):
                    raise OAuthError("unauthorized_client", f"this client may not use {grant_type}")
                raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
            resource = params.get("resource")
            if grant_type == "authorization_code":
                code = params.get("code")
                if not code:
                    raise invalid_request("code is required")
                tokens = await self.grants.exchange_code(
                    code,
                    client_id=client.client_id,
                    redirect_uri=params.get("redirect_uri"),
                    code_verifier=params.get("code_verifier"),
                    resource=resource,
                )
            else:
                refresh_token = params.get("refresh_token")
                if not refresh_token:
                    raise invalid_request("refresh_token is required")
                scope = params.get("scope")
                tokens = await self.grants.refresh(
                    refresh_token,
                    client_id=client.client_id,
                    resource=resource,
                    scopes=self._scope_list(scope) if scope is not None else None,
                )
        except OAuthError as exc:
            # What the client sent is bounded and made safe for a line: it may be anything.
            details = {"error": exc.error, "grant_type": clean(grant_type, 40) if grant_type else None}
            sender = clean(client_id) if client_id else None
            self.record_event(AuditEvent("token.refused", "failure", client_id=sender, details=details))
            return oauth_error(exc)
        redeemed = grant_type == "authorization_code"
        for kind in ("code.redeemed", "token.issued") if redeemed else ("token.refreshed",):
            event = AuditEvent(kind, subject=tokens.subject, client_id=client.client_id, grant_id=tokens.grant_id)
            self.record_event(event)
        body = tokens.response()
        if "refresh_token" not in client.grant_types:
            body.pop("refresh_token", None)
        return json_response(body)

    async def _authenticated_client(self, request: Request, params: dict[str, str]) -> Client:
        given = credentials(request.headers.get("authorization"), params)
        try:
            client = await self.client(given.client_id)
        except ClientLookupError as exc:
            raise invalid_client(str(exc)) from None
        return authenticate(client, given)

    # --- revoke (RFC 7009) -----------------------------------------------------------------------------------
    async def revoke(self, request: Request) -> Response:
        self.audit_request(request)
        try:
            params = await forms.form(request)
            client = await self._authenticated_client(request, params)
            token = params.get("token")
            if not token:
                raise invalid_request("token is required")
        except OAuthError as exc:
            return oauth_error(exc)
        await self.grants.revoke_token(token, client.client_id)
        return Response(status_code=200, headers=NO_STORE)

    def audit_request(self, request: Request) -> None:
        """Name the request being served (address, request id) for the audit events it raises."""
        if self.audit is not None:
            bind_request(request.scope)

    def record_event(self, event: AuditEvent) -> None:
        """Tell the audit trail, if there is one."""
        if self.audit is not None:
            self.audit(event)


def _prompts(prompt: str | None) -> list[str]:
    """The prompt values this server acts on; `none` with any other value is a contradiction."""
    values = set((prompt or "").split(" ")) - {""}
    if "none" in values and len(values) > 1:
        raise invalid_request("prompt=none cannot be combined with other prompt values")
    return [value for value in PROMPTS if value in values]
