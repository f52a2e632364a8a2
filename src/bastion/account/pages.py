"""The connected applications page: a signed-in person sees every application they authorized (its name,
whether its domain is verified, what it may do, when, when it last got a token) and revokes any of them.

  GET  /account              the page (or the sign-in page, for a browser not signed in)
  POST /account/sign-in      start signing in with the chosen method (then back to `return_to`)
  POST /account/revoke       end one of the person's own grants: every token it issued stops working at once
  POST /account/sign-out     end the browser's session

Forms carry the session's CSRF token and must come from this site; a grant that is not the person's is
refused without a hint that it exists. The consent screen links here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..connections.links import PATH as LINK_PATH
from ..connections.links import is_link
from ..oauth import forms
from ..oauth.client_identity import verified_domain
from ..oauth.errors import OAuthError
from ..oauth.pages import error_page, render
from ..oauth.see_other import see_other
from ..public_url import local
from .sessions import AccountSession, AccountSessions

if TYPE_CHECKING:
    from ..admin.operations import Administration
    from ..connections.accounts import ConnectedAccounts
    from ..oauth.server import AuthorizationServer

PATH = "/account"
SIGN_IN = "/account/sign-in"
# Where a sign-in may lead back to: these paths, and connect links' pages (never a URL a link could choose).
RETURNS = frozenset({PATH, "/admin"})


def may_return_to(path: str) -> bool:
    prefix = f"{LINK_PATH}/"
    return path in RETURNS or (path.startswith(prefix) and is_link(path[len(prefix) :]))


def when(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))


class SignedIn:
    """What every page of the account and admin pages shares: the session, the sign-in page, the form checks."""

    def __init__(self, server: AuthorizationServer, sessions: AccountSessions) -> None:
        self.server = server
        self.sessions = sessions

    async def session(self, request: Request) -> AccountSession | None:
        self.server.audit_request(request)
        return await self.sessions.find(request.scope)

    async def sign_in_page(self, request: Request, return_to: str, what: str, only: str | None = None) -> Response:
        """The sign-in page leading back to `return_to`; with `only`, that sign-in method alone (if offered)."""
        methods = [(name, method.label) for name, method in self.server.authenticators.items()]
        if only is not None and any(name == only for name, _ in methods):
            methods = [(name, label) for name, label in methods if name == only]
        return render(
            "account_sign_in.html",
            form_targets=await self.server.sign_in_targets(request),  # the button leads on to the provider
            title="Sign in",
            what=what,
            server=self.server.issuer(request),
            methods=methods,
            return_to=return_to,
            action=local(request.scope, SIGN_IN),
        )

    async def checked_form(self, request: Request) -> tuple[AccountSession, dict[str, str]] | Response:
        """The session and fields of a state-changing form, or the page refusing it (nothing changed)."""
        if not forms.from_this_site(request):
            return error_page("This form can only be submitted from this site.", 403)
        session = await self.session(request)
        try:
            fields = await forms.form(request)
        except OAuthError as exc:
            return error_page(exc.description, exc.status)
        if session is None or not session.csrf_matches(fields.get("csrf_token")):
            return error_page("This form expired or did not come from this browser. Reload the page.", 403)
        return session, fields


class Area:
    """A set of pages behind the account sign-in, acting through the one Administration."""

    def __init__(self, signed_in: SignedIn, administration: Administration, admins: frozenset[str]) -> None:
        self.signed_in = signed_in
        self.server = signed_in.server
        self.administration = administration
        self.admins = admins

    def page(self, request: Request, session: AccountSession, template: str, title: str, **context: Any) -> Response:
        """A signed-in page: the header bar's subject, server and sign-out form (its CSRF token) filled in."""
        server = self.server.issuer(request)
        return render(
            template,
            title=title,
            wide=True,
            subject=session.subject,
            server=server,
            root=request.scope.get("root_path", ""),  # the paths of its forms, under the mount path if mounted
            csrf_token=session.csrf,
            **context,
        )


class AccountPages(Area):
    def __init__(
        self,
        signed_in: SignedIn,
        administration: Administration,
        admins: frozenset[str],
        connected: ConnectedAccounts | None = None,
    ) -> None:
        super().__init__(signed_in, administration, admins)
        self.connected = connected  # the person's connected accounts ([[connections]]), listed with the applications

    def routes(self) -> list[BaseRoute]:
        return [
            Route(PATH, self.show, methods=["GET"]),
            Route(SIGN_IN, self.sign_in, methods=["POST"]),
            Route(f"{PATH}/revoke", self.revoke, methods=["POST"]),
            Route(f"{PATH}/sign-out", self.sign_out, methods=["POST"]),
        ]

    async def show(self, request: Request) -> Response:
        session = await self.signed_in.session(request)
        if session is None:
            return await self.signed_in.sign_in_page(request, PATH, "see the applications you connected")
        applications = []
        for grant in await self.administration.grant_list(subject=session.subject):
            client = await self.server.client(grant["client_id"])
            applications.append(
                {
                    "grant_id": grant["grant_id"],
                    "name": (client.client_name if client else None) or "An unnamed application",
                    "verified_domain": verified_domain(client) if client else None,
                    "scopes": " ".join(grant["scopes"] or []) or "(no specific scope)",
                    "authorized": when(grant["created_at"]),
                    "last_used": when(await self.administration.last_token_at(grant["grant_id"])),
                }
            )
        accounts = [
            {
                "connection": account.connection,
                "label": account.label,
                "account": account.account or "",
                "scopes": " ".join(account.scopes) or "(as chosen at the provider)",
                "connected": when(account.connected_at),
            }
            for account in (await self.connected.listed(session.subject) if self.connected is not None else [])
        ]
        return self.page(
            request,
            session,
            "account.html",
            "Connected applications",
            applications=applications,
            accounts=accounts,
            connections=self.connected is not None,
            admin=session.subject in self.admins,
        )

    async def sign_in(self, request: Request) -> Response:
        if not forms.from_this_site(request):
            return error_page("This form can only be submitted from this site.", 403)
        self.server.audit_request(request)
        try:
            fields = await forms.form(request)
        except OAuthError as exc:
            return error_page(exc.description, exc.status)
        return_to = fields.get("return_to", PATH)
        method = fields.get("method", "")
        if not may_return_to(return_to) or method not in self.server.authenticators:
            return error_page("Choose one of the sign-in methods this server offers.")
        transaction = await self.server.transactions.open_for_account(request, return_to)
        return see_other(await self.server.begin_sign_in(request, transaction, method))

    async def revoke(self, request: Request) -> Response:
        checked = await self.signed_in.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session, fields = checked
        client_id = await self.administration.revoke_own(fields.get("grant_id", ""), session.subject)
        if client_id is None:
            return error_page("That application is not connected to your account (any more).", 404)
        response = RedirectResponse(PATH, 303, headers={"Cache-Control": "no-store"})
        # This browser's remembered approval goes too: the application must ask again, on the consent screen.
        if (forget := self.server.approvals.forget(request.scope, client_id)) is not None:
            response.headers.append("Set-Cookie", forget)
        return response

    async def sign_out(self, request: Request) -> Response:
        checked = await self.signed_in.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session, _ = checked
        response = RedirectResponse(PATH, 303, headers={"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", await self.signed_in.sessions.close(session))
        return response
