"""The pages a user connects an account on, reached from the link a tool's URL elicitation carried.

  GET  /connections/link/<link>        who asks for what; the sign-in page first if this browser has no session
  POST /connections/link/<link>        consumes the link, then on to the provider (or cancel)
  GET  /connections/callback/<name>    the provider's answer: the token kept for the user; "you can close this"
  POST /account/disconnect             the user's own account forgotten (and revoked at the provider)

The person completing the flow must be the one the link was made for: the browser's session (signed in through
Bastion, by the same method) must be that subject, on the link page, on the way to the provider and again at the
callback. A link forwarded to someone else shows them a refusal and changes nothing, whichever way it goes: an
attacker's link completed by a victim would otherwise put the victim's account under the attacker's name, and a
victim's link completed by an attacker the reverse.

The way to the provider is like sign-in's (identity/login.py): a random state, stored server-side for ten
minutes, used once, bound to this browser by a __Host- cookie named after it; PKCE where the provider takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..oauth import forms
from ..oauth.client_identity import verified_domain
from ..oauth.errors import OAuthError
from ..oauth.pages import render
from ..ops.audit import AuditEvent, bind_request
from ..public_url import local
from ..security.cookies import clear_cookie, host_cookie, read_host_cookie
from ..security.crypto import new_token, pkce_challenge, same, token_hash
from ..store import Commit, Store, keys
from .accounts import ConnectedAccounts
from .links import PATH, ConnectLinks, ConnectRequest
from .provider import ConnectionProvider, ProviderRefused, ProviderUnreachable

if TYPE_CHECKING:
    from ..account.pages import SignedIn

STATE_SECONDS = 600
CALLBACK = "/connections/callback"
ACCOUNT = "/account"
GONE = "This link has expired or was already used. Go back to the application and try the tool again."
SOMEONE_ELSE = (
    "This link was made for another account. Nothing was connected. If someone sent you this link, do not use it; "
    "if it is yours, sign out and sign in as the account that asked."
)
SIGNED_OUT = "This browser is no longer signed in to this server. Nothing was connected; try the tool again."
OTHER_BROWSER = "This connection was started in another browser (or its cookie is gone). Try the tool again."


def message(title: str, line: str, status: int = 200, note: str | None = None) -> Response:
    return render("message.html", status, title=title, lines=[line], note=note)


class ConnectPages:
    def __init__(
        self,
        signed_in: SignedIn,
        store: Store,
        links: ConnectLinks,
        accounts: ConnectedAccounts,
        audit: Callable[[AuditEvent], None] | None = None,
    ) -> None:
        self.signed_in = signed_in
        self.server = signed_in.server
        self.store = store  # where a connection in progress at its provider is kept (its state)
        self.links = links
        self.accounts = accounts
        self.providers = accounts.providers  # the connections users may make, by name
        self.audit = audit  # told of each account connected or refused, and each disconnect

    def routes(self) -> list[BaseRoute]:
        return [
            Route(f"{PATH}/{{link}}", self.show, methods=["GET"]),
            Route(f"{PATH}/{{link}}", self.go, methods=["POST"]),
            Route(f"{CALLBACK}/{{name}}", self.callback, methods=["GET"]),
            Route(f"{ACCOUNT}/disconnect", self.disconnect, methods=["POST"]),
        ]

    def _event(self, type_: str, outcome: str, asked: ConnectRequest | None, **details: Any) -> None:
        if self.audit is None:
            return
        if asked is not None:
            details = {"connection": asked.connection, "tool": asked.tool, **details}
        subject = asked.subject if asked is not None else None
        client = asked.client_id if asked is not None else None
        self.audit(AuditEvent(type_, outcome, subject=subject, client_id=client, details=details))

    # --- the link -----------------------------------------------------------------------------------------
    async def show(self, request: Request) -> Response:
        link = request.path_params["link"]
        asked = await self.links.find(link)
        if asked is None or asked.connection not in self.providers:
            return message("Link expired", GONE, 410)
        session = await self.signed_in.session(request)
        if session is None:
            label = self.providers[asked.connection].label
            return await self.signed_in.sign_in_page(
                request, f"{PATH}/{link}", f"connect your {label} account", only=asked.method
            )
        if session.subject != asked.subject:
            self._event("connection.refused", "failure", asked, reason="another user", seen=session.subject)
            return message("Not your link", SOMEONE_ELSE, 403)
        provider = self.providers[asked.connection]
        client = await self.server.client(asked.client_id)
        try:
            target = await provider.authorization_endpoint()
        except (ProviderRefused, ProviderUnreachable) as exc:
            return message("Cannot connect now", str(exc), 502)
        return render(
            "connect.html",
            form_targets=[target],  # the form's answer redirects there
            title=f"Connect {provider.label}",
            provider=provider.label,
            client_name=(client.client_name if client else None) or "An application",
            verified_domain=verified_domain(client) if client else None,
            tool=asked.tool,
            scopes=provider.scopes_to_ask(asked.scopes),
            subject=session.subject,
            server=self.server.issuer(request),
            account=local(request.scope, ACCOUNT),
            action=local(request.scope, f"{PATH}/{link}"),
            csrf_token=session.csrf,
        )

    async def go(self, request: Request) -> Response:
        checked = await self.signed_in.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session, fields = checked
        link = request.path_params["link"]
        asked = await self.links.find(link)
        if asked is None or asked.connection not in self.providers:
            return message("Link expired", GONE, 410)
        if session.subject != asked.subject:  # checked before the link is used up: its owner may still use it
            self._event("connection.refused", "failure", asked, reason="another user", seen=session.subject)
            return message("Not your link", SOMEONE_ELSE, 403)
        asked = await self.links.take(link)
        if asked is None:
            return message("Link expired", GONE, 410)
        if fields.get("decision") != "connect":
            self._event("connection.refused", "failure", asked, reason="cancelled")
            return message("Nothing connected", "You cancelled. You can close this window.")
        provider = self.providers[asked.connection]
        state, verifier, binding = new_token(), new_token(48), new_token()
        scopes = provider.scopes_to_ask(asked.scopes)
        try:
            url = await provider.authorization_url(
                self._redirect_uri(request, provider), state, pkce_challenge(verifier), scopes
            )
        except (ProviderRefused, ProviderUnreachable) as exc:
            return message("Cannot connect now", str(exc), 502)
        record = {
            "subject": asked.subject,
            "client_id": asked.client_id,
            "connection": asked.connection,
            "tool": asked.tool,
            "scopes": scopes,
            "verifier": verifier,
            "binding": token_hash(binding),
        }
        await self.store.commit(Commit().set(keys.connect_state(token_hash(state)), record, STATE_SECONDS))
        response = RedirectResponse(url, 303, headers={"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", host_cookie(self._cookie(state), binding, STATE_SECONDS))
        return response

    def _redirect_uri(self, request: Request, provider: ConnectionProvider) -> str:
        return f"{self.server.issuer(request)}{CALLBACK}/{provider.name}"

    @staticmethod
    def _cookie(state: str) -> str:
        return f"bastion-connect-{token_hash(state)[:16]}"

    # --- the provider's answer ----------------------------------------------------------------------------
    async def callback(self, request: Request) -> Response:
        try:
            params = forms.query(request)
        except OAuthError as exc:
            return message("Not connected", exc.description, 400)
        bind_request(request.scope)
        state = params.get("state", "")
        if not state:
            return message("Not connected", OTHER_BROWSER, 400)
        cookie = self._cookie(state)
        response = await self._callback(request, params, state, read_host_cookie(request.scope, cookie))
        response.headers.append("Set-Cookie", clear_cookie(cookie))
        return response

    async def _callback(self, request: Request, params: dict[str, str], state: str, binding: str | None) -> Response:
        name = request.path_params["name"]
        provider = self.providers.get(name)
        key = keys.connect_state(token_hash(state))
        if binding is None or provider is None:
            self._event("connection.refused", "failure", None, reason="another browser")
            return message("Not connected", OTHER_BROWSER, 400)
        record = await self.store.get(key)
        if record is None:
            self._event("connection.refused", "failure", None, reason="expired")
            return message("Not connected", GONE, 400)
        asked = ConnectRequest(
            subject=str(record["subject"]),
            client_id=str(record["client_id"]),
            connection=str(record["connection"]),
            scopes=tuple(record.get("scopes") or ()),
            tool=str(record.get("tool") or ""),
            method="",
            elicitation_id="",
        )
        # The binding, the provider and the browser's user are checked before the state is used up.
        if not same(token_hash(binding), str(record.get("binding", ""))) or asked.connection != name:
            self._event("connection.refused", "failure", asked, reason="another browser")
            return message("Not connected", OTHER_BROWSER, 400)
        session = await self.signed_in.session(request)
        if session is None:  # signed out (or the session ended) since going to the provider
            self._event("connection.refused", "failure", asked, reason="signed out")
            return message("Not connected", SIGNED_OUT, 403)
        if session.subject != asked.subject:
            self._event("connection.refused", "failure", asked, reason="another user", seen=session.subject)
            return message("Not your connection", SOMEONE_ELSE, 403)
        if await self.store.take(key) is None:
            return message("Not connected", GONE, 400)
        if "error" in params:
            reason = "denied at the provider" if params["error"] == "access_denied" else "provider error"
            self._event("connection.refused", "failure", asked, reason=reason)
            return message("Not connected", f"{provider.label} did not grant access ({params['error'][:64]}).", 400)
        code = params.get("code")
        if not code:
            self._event("connection.refused", "failure", asked, reason="no code")
            return message("Not connected", f"{provider.label} sent no authorization code.", 400)
        try:
            token = await provider.exchange(
                code, self._redirect_uri(request, provider), str(record["verifier"]), list(asked.scopes)
            )
        except (ProviderRefused, ProviderUnreachable) as exc:
            self._event("connection.refused", "failure", asked, reason="code exchange failed")
            return message("Not connected", str(exc), 502)
        await self.accounts.save(asked.subject, asked.connection, token)
        self._event("connection.connected", "success", asked, scopes=" ".join(token.get("scopes") or ()))
        return message(
            f"{provider.label} connected",
            f"Your {provider.label} account is connected. You can close this window and return to the application.",
            note="You can disconnect it at any time on your account page.",
        )

    # --- disconnecting ------------------------------------------------------------------------------------
    async def disconnect(self, request: Request) -> Response:
        checked = await self.signed_in.checked_form(request)
        if isinstance(checked, Response):
            return checked
        session, fields = checked
        name = fields.get("connection", "")
        revoked = await self.accounts.disconnect(session.subject, name) if name in self.providers else None
        if revoked is None:
            return message("Not connected", "That account is not connected (any more).", 404)
        if self.audit is not None:
            details: dict[str, str | bool] = {"connection": name, "revoked_at_provider": revoked, "by": session.subject}
            self.audit(AuditEvent("connection.disconnected", subject=session.subject, details=details))
        return RedirectResponse(local(request.scope, ACCOUNT), 303, headers={"Cache-Control": "no-store"})
