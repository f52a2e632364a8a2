"""Dev login: sign in under any name, without a password, so the whole OAuth flow works on a laptop.

Only for loopback servers: settings refuse it elsewhere, and every request to it must come from a loopback
address. The subject is "dev:<name>".
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..oauth import forms
from ..oauth.errors import OAuthError
from ..oauth.pages import error_page, render
from ..oauth.see_other import see_other
from ..public_url import local

if TYPE_CHECKING:
    from ..oauth.transactions import SignInDesk

NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
PATH = "/login/dev"


def _from_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class DevLogin:
    name = "dev"
    label = "dev login"

    def __init__(self, desk: SignInDesk) -> None:
        self.desk = desk

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.form, methods=["GET"]), Route(PATH, self.submit, methods=["POST"])]

    async def form_target(self, request: Request) -> str | None:
        return None  # the dev login page is on this server

    async def begin(self, request: Request, transaction: str) -> Response:
        return RedirectResponse(f"{PATH}?transaction={transaction}", 302, headers={"Cache-Control": "no-store"})

    async def form(self, request: Request) -> Response:
        if not _from_loopback(request):
            return error_page("Dev login is available only on this machine.", 403)
        try:
            transaction = forms.query(request).get("transaction", "")
        except OAuthError as exc:
            return error_page(exc.description)
        # Signing in redirects to the application: its origin joins the page's form-action.
        record = await self.desk.pending(transaction)
        targets = [record["redirect_uri"]] if record else []
        return render(
            "dev_login.html",
            form_targets=targets,
            title="Sign in (development)",
            action=local(request.scope, PATH),
            transaction=transaction,
        )

    async def submit(self, request: Request) -> Response:
        if not _from_loopback(request):
            return error_page("Dev login is available only on this machine.", 403)
        try:
            fields = await forms.form(request)
        except OAuthError as exc:
            return error_page(exc.description, exc.status)
        name = fields.get("username", "")
        if not NAME.match(name):
            return error_page("Names are 1-64 letters, digits, '.', '_' or '-'.")
        completed = await self.desk.complete(
            request, fields.get("transaction", ""), f"dev:{name}", {"name": name, "provider": "dev"}
        )
        return see_other(completed)  # back to the application (or the consent screen) with a GET
