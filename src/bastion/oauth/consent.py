"""The consent screen: before anyone signs in, the user sees which application asks for what, and decides.

CSRF protection is a double submit bound to the transaction: each GET of the page gives the form a token and
the browser a __Host- cookie holding the same token; the transaction remembers the token's hash. A POST must
carry matching form and cookie tokens (compared in constant time) whose hash the transaction knows, and the
transaction is consumed by that POST, so a token works once. A second GET (prefetch, an extension) adds a
token rather than replacing one, so it cannot break the page the user is looking at.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..ops.audit import AuditEvent
from ..public_url import local
from ..security.cookies import clear_cookie, host_cookie, read_host_cookie
from ..security.crypto import new_token, token_hash
from . import forms
from .client_identity import identity_warning, verified_domain
from .client_redirects import denied
from .errors import OAuthError
from .pages import error_page, render
from .see_other import see_other
from .transactions import CONSENT_PATH as PATH

if TYPE_CHECKING:
    from .clients import Client
    from .server import AuthorizationServer

MAX_TOKENS = 5


def csrf_cookie_name(transaction: str) -> str:
    # One cookie per transaction: two sign-ins in two tabs do not overwrite each other's token.
    return f"bastion-csrf-{token_hash(transaction)[:16]}"


def _https(url: str | None) -> str | None:
    """Only https URLs are ever rendered (a logo); anything else is dropped."""
    if not url:
        return None
    try:
        return url if urlsplit(url).scheme == "https" else None
    except ValueError:
        return None


class ConsentScreen:
    def __init__(self, server: AuthorizationServer) -> None:
        self.server = server
        self.transactions = server.transactions

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.show, methods=["GET"]), Route(PATH, self.decide, methods=["POST"])]

    async def show(self, request: Request) -> Response:
        self.server.audit_request(request)
        try:
            transaction = forms.query(request).get("transaction", "")
        except OAuthError as exc:
            return error_page(exc.description)
        record = await self.transactions.pending(transaction)
        if record is None or record.get("approved"):
            return error_page("This sign-in request has expired or was already answered. Start again from the app.")
        client = await self.server.client(record["client_id"])
        if client is None:
            return error_page("This application is no longer registered.")
        cookie_name = csrf_cookie_name(transaction)
        token = read_host_cookie(request.scope, cookie_name) or ""
        if not token or token_hash(token) not in record["csrf"]:
            token = new_token()
            await self.transactions.add_csrf(transaction, record, token_hash(token), MAX_TOKENS)
        targets = [record["redirect_uri"], *await self.server.sign_in_targets(request)]
        response = render(
            "consent.html",
            form_targets=targets,
            **self._view(request, client, record),
            transaction=transaction,
            csrf_token=token,
            action=local(request.scope, PATH),
        )
        response.headers.append("Set-Cookie", host_cookie(cookie_name, token, int(self.transactions.remaining(record))))
        self.server.record_event(AuditEvent("consent.shown", client_id=client.client_id))
        return response

    def _view(self, request: Request, client: Client, record: dict[str, Any]) -> dict[str, Any]:
        name = client.client_name or "An unnamed application"
        return {
            "title": f"Allow {name}?",
            "client_name": name,
            "initial": name[:1].upper(),
            "logo": _https(client.logo_uri),
            "verified_domain": verified_domain(client),
            "identity_warning": identity_warning(client, record["redirect_uri"]),
            "server": self.server.issuer(request),
            "scopes": record["scopes"] or ["(no specific scope)"],
            "redirect_host": urlsplit(record["redirect_uri"]).netloc,
            "resource": record["resource"],
            "methods": [(name, method.label) for name, method in self.server.authenticators.items()],
        }

    async def decide(self, request: Request) -> Response:
        self.server.audit_request(request)
        # A cross-site POST is refused outright, whatever tokens it carries.
        if not forms.from_this_site(request):
            return error_page("This form can only be submitted from this site.", 403)
        try:
            fields = await forms.form(request)
        except OAuthError as exc:
            return error_page(exc.description, exc.status)
        transaction = fields.get("transaction", "")
        submitted = fields.get("csrf_token", "")
        cookie_name = csrf_cookie_name(transaction) if transaction else ""
        from_cookie = (read_host_cookie(request.scope, cookie_name) if cookie_name else None) or ""
        record = await self.transactions.pending(transaction)
        if (
            record is None
            or not submitted
            or not hmac.compare_digest(submitted.encode(), from_cookie.encode())
            or token_hash(submitted) not in record.get("csrf", [])
        ):
            return error_page(
                "This consent form expired or did not come from this browser. Start again from the app.", 403
            )
        decision = fields.get("decision", "")
        methods = list(self.server.authenticators)
        # One sign-in method: "approve". Several: "approve:<method>", from the button the user pressed.
        method = methods[0] if decision == "approve" and len(methods) == 1 else decision.removeprefix("approve:")
        if decision.startswith("approve") and method in self.server.authenticators:
            if not await self.transactions.approve(transaction, record):
                return error_page("This sign-in request was already answered.")
            approved = AuditEvent("consent.approved", client_id=record["client_id"], details={"method": method})
            self.server.record_event(approved)
            response = await self.server.begin_sign_in(request, transaction, method)
        elif decision == "deny":
            if not await self.transactions.abandon(transaction):
                return error_page("This sign-in request was already answered.")
            self.server.record_event(AuditEvent("consent.denied", "failure", client_id=record["client_id"]))
            response = denied(record)
        else:
            return error_page("Choose Allow or Deny.")
        response.headers.append("Set-Cookie", clear_cookie(cookie_name))
        return see_other(response)  # on to the sign-in, or back to the application: with a GET
