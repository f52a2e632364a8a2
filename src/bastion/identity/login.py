"""Sign-in through an upstream identity provider, after the user approved on the consent screen.

`begin` (called only after approval) creates the upstream state: random, stored server-side for at most ten
minutes, used once, and bound to this browser by a __Host- cookie of its own. The cookie is named after the
state's hash, so a second sign-in in the same browser adds a cookie instead of overwriting the first one's; it
holds a random binding whose hash the state's record keeps. The callback refuses a missing, duplicated or
different cookie (leaving the state unused), a replayed or expired state, and anything the provider answers
that does not check out; then the code is exchanged server-side (with PKCE) and the authorization is completed
for the subject "<provider>:<user id>", the provider's tokens sealed inside the grant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..oauth import forms
from ..oauth.errors import OAuthError
from ..oauth.pages import error_page
from ..ops.audit import AuditEvent, bind_request
from ..security.cookies import clear_cookie, host_cookie, read_host_cookie
from ..security.crypto import new_token, pkce_challenge, same, token_hash
from ..store import Commit, Store, keys
from .upstream import UpstreamLoginError, UpstreamProvider

if TYPE_CHECKING:
    from ..oauth.transactions import SignInDesk

STATE_SECONDS = 600
OTHER_BROWSER = "This sign-in was started in another browser (or its cookie is gone). Start again from the app."
EXPIRED = "This sign-in has expired or was already completed. Start again from the app."


class UpstreamLogin:
    def __init__(
        self,
        desk: SignInDesk,
        store: Store,
        provider: UpstreamProvider,
        label: str | None = None,
        audit: Callable[[AuditEvent], None] | None = None,
    ) -> None:
        self.desk = desk
        self.audit = audit  # told of sign-ins that fail here (ops/audit.py)
        self.store = store
        self.provider = provider
        self.name = provider.name
        self.label = label or provider.name
        self.path = f"/callback/{provider.name}"

    def cookie_name(self, state: str) -> str:
        # One cookie per sign-in (16 hex digits of the state's hash keep the header small).
        return f"bastion-{self.name}-{token_hash(state)[:16]}-state"

    def routes(self) -> list[BaseRoute]:
        return [Route(self.path, self.callback, methods=["GET"])]

    def redirect_uri(self, request: Request) -> str:
        return self.desk.issuer(request) + self.path

    async def form_target(self, request: Request) -> str | None:
        try:
            return str((await self.provider.discovery())["authorization_endpoint"])
        except UpstreamLoginError:
            return None

    async def begin(self, request: Request, transaction: str) -> Response:
        state, verifier, nonce, binding = new_token(), new_token(48), new_token(16), new_token()
        record = {"transaction": transaction, "verifier": verifier, "nonce": nonce, "binding": token_hash(binding)}
        try:
            url = await self.provider.authorization_url(
                self.redirect_uri(request), state, pkce_challenge(verifier), nonce
            )
        except UpstreamLoginError as exc:
            return error_page(str(exc), 502)
        await self.store.commit(Commit().set(keys.upstream_state(token_hash(state)), record, STATE_SECONDS))
        response = RedirectResponse(url, 302, headers={"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", host_cookie(self.cookie_name(state), binding, STATE_SECONDS))
        return response

    async def callback(self, request: Request) -> Response:
        try:
            params = forms.query(request)
        except OAuthError as exc:
            return error_page(exc.description)
        state = params.get("state", "")
        if not state:
            return error_page(OTHER_BROWSER)
        cookie = self.cookie_name(state)
        if self.audit is not None:
            bind_request(request.scope)
        response = await self._callback(request, params, state, read_host_cookie(request.scope, cookie))
        # Whatever the outcome, this browser's cookie for this state has nothing left to do.
        response.headers.append("Set-Cookie", clear_cookie(cookie))
        return response

    async def _callback(self, request: Request, params: dict[str, str], state: str, binding: str | None) -> Response:
        key = keys.upstream_state(token_hash(state))
        # The binding is checked before the state is taken, so a callback from another browser uses nothing up.
        if binding is None:
            return self._failed("another browser", error_page(OTHER_BROWSER))
        record = await self.store.get(key)
        if record is None:
            return self._failed("expired", error_page(EXPIRED))
        if not same(token_hash(binding), str(record.get("binding", ""))):
            return self._failed("another browser", error_page(OTHER_BROWSER))
        record = await self.store.take(key)
        if record is None:
            return self._failed("expired", error_page(EXPIRED))
        if "error" in params:
            reason = "denied at the provider" if params["error"] == "access_denied" else "provider error"
            return self._failed(reason, await self._refused(record["transaction"], params["error"]))
        code = params.get("code")
        if not code:
            return self._failed("no code", error_page(f"{self.provider.name} sent no authorization code."))
        try:
            identity = await self.provider.exchange(
                code, self.redirect_uri(request), record["verifier"], record["nonce"]
            )
        except UpstreamLoginError as exc:
            return self._failed("code exchange failed", error_page(str(exc), 502))
        claims = {**identity.claims, "provider": self.provider.name, "upstream": {self.provider.name: identity.token}}
        return await self.desk.complete(
            request, record["transaction"], f"{self.provider.name}:{identity.user_id}", claims
        )

    def _failed(self, reason: str, page: Response) -> Response:
        if self.audit is not None:
            details = {"method": self.provider.name, "reason": reason}
            self.audit(AuditEvent("signin.failed", "failure", details=details))
        return page

    async def _refused(self, transaction: str, error: str) -> Response:
        if error == "access_denied":
            return await self.desk.user_denied(transaction)
        if not await self.desk.abandon(transaction):
            return error_page("This sign-in has expired. Start again from the app.")
        return error_page(f"{self.provider.name} could not sign you in ({error[:64]}).")
