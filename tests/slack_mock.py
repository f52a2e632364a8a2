"""A local stand-in for slack.com, speaking Slack's OAuth v2 for user tokens and the Web API methods tools use.

As Slack has them: GET /oauth/v2/authorize (here a one-button page standing in for Slack's consent screen; user
token scopes in `user_scope`, comma-separated), POST /api/oauth.v2.access (form in, client credentials by HTTP
Basic or in the form; the user's token under `authed_user`; with token rotation on, an expiring token and a
refresh token, and grant_type=refresh_token answering a new pair at the top level; errors as 200 {"ok": false}),
POST /api/auth.revoke and /api/auth.test (the token as the bearer). PKCE S256 is checked when the authorization
request carried a challenge. Counts what tests assert on: refreshes, revocations, tokens seen by the API.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.local_server import free_port, serve_in_thread

TEAM = {"id": "T0001", "name": "Acme"}


@dataclass
class Slack:
    client_id: str
    client_secret: str
    rotation: bool = False  # token rotation: expiring access tokens and refresh tokens
    expires_in: int = 43_200
    clock: Callable[[], float] = time.time
    codes: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, dict] = field(default_factory=dict)  # access token -> {user, scope, expires_at}
    refresh_tokens: dict[str, dict] = field(default_factory=dict)
    refreshes: int = 0
    revoked: list[str] = field(default_factory=list)
    seen_bearers: list[str] = field(default_factory=list)
    refuse_next: str | None = None  # the error the next oauth.v2.access answers with

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id:
            return HTMLResponse("<p>Invalid client_id parameter</p>", 400)
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in q.items())
        return HTMLResponse(
            f'<form method="post" action="/oauth/v2/authorize">{hidden}'
            '<input name="user" value="U0ADA"><button type="submit" name="decision" value="allow">Allow</button>'
            '<button type="submit" name="decision" value="deny">Cancel</button></form>'
        )

    async def approve(self, request: Request) -> Response:
        form = await request.form()
        back = str(form["redirect_uri"])
        if form.get("decision") == "deny":
            return RedirectResponse(f"{back}?{urlencode({'error': 'access_denied', 'state': form['state']})}", 302)
        code = f"{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.codes[code] = {
            "user": str(form.get("user") or "U0ADA"),
            "challenge": form.get("code_challenge"),
            "redirect_uri": back,
            "scope": str(form.get("user_scope", "")),
        }
        return RedirectResponse(f"{back}?{urlencode({'code': code, 'state': form['state']})}", 302)

    def _client_ok(self, request: Request, form) -> bool:
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") == f"Basic {basic}":
            return True
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def _issue(self, user: str, scope: str) -> dict:
        access = "xoxp-" + secrets.token_hex(16) if not self.rotation else "xoxe.xoxp-1-" + secrets.token_hex(16)
        expires_at = self.clock() + self.expires_in if self.rotation else None
        self.tokens[access] = {"user": user, "scope": scope, "expires_at": expires_at}
        issued = {"access_token": access, "token_type": "user", "scope": scope}
        if self.rotation:
            refresh = "xoxe-1-" + secrets.token_hex(16)
            self.refresh_tokens[refresh] = {"user": user, "scope": scope}
            issued |= {"refresh_token": refresh, "expires_in": self.expires_in}
        return issued

    async def access(self, request: Request) -> Response:
        form = await request.form()
        if self.refuse_next:
            error, self.refuse_next = self.refuse_next, None
            return JSONResponse({"ok": False, "error": error})
        if not self._client_ok(request, form):
            return JSONResponse({"ok": False, "error": "invalid_client_id"})
        if form.get("grant_type") == "refresh_token":
            grant = self.refresh_tokens.pop(str(form.get("refresh_token")), None)  # rotated: used once
            if grant is None:
                return JSONResponse({"ok": False, "error": "invalid_refresh_token"})
            self.refreshes += 1
            return JSONResponse({"ok": True, **self._issue(grant["user"], grant["scope"]), "team": TEAM})
        grant = self.codes.pop(str(form.get("code")), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"ok": False, "error": "invalid_code"})
        if grant["challenge"]:
            verifier = str(form.get("code_verifier", ""))
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if computed != grant["challenge"]:
                return JSONResponse({"ok": False, "error": "invalid_code_verifier"})
        authed_user = {"id": grant["user"], **self._issue(grant["user"], grant["scope"])}
        return JSONResponse({"ok": True, "app_id": "A0001", "authed_user": authed_user, "team": TEAM})

    def _bearer(self, request: Request) -> dict | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen_bearers.append(token)
        found = self.tokens.get(token)
        if found is None or (found["expires_at"] is not None and found["expires_at"] <= self.clock()):
            return None
        return {**found, "token": token}

    async def revoke(self, request: Request) -> Response:
        found = self._bearer(request)
        if found is None:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        self.tokens.pop(found["token"], None)
        self.revoked.append(found["token"])
        return JSONResponse({"ok": True, "revoked": True})

    async def test(self, request: Request) -> Response:
        found = self._bearer(request)
        if found is None:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        return JSONResponse({"ok": True, "user_id": found["user"], "team": TEAM["name"], "scope": found["scope"]})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/v2/authorize", self.authorize, methods=["GET"]),
                Route("/oauth/v2/authorize", self.approve, methods=["POST"]),
                Route("/api/oauth.v2.access", self.access, methods=["POST"]),
                Route("/api/auth.revoke", self.revoke, methods=["POST"]),
                Route("/api/auth.test", self.test, methods=["POST", "GET"]),
            ]
        )


def slack_entry(base: str, secret_env: str, name: str = "slack") -> dict:
    """A [[connections]] entry for the stand-in at `base` (its endpoints in place of slack.com's)."""
    return {
        "name": name,
        "preset": "slack",
        "client_id": "1234.5678",
        "client_secret_env": secret_env,
        "authorization_endpoint": f"{base}/oauth/v2/authorize",
        "token_endpoint": f"{base}/api/oauth.v2.access",
        "revocation_endpoint": f"{base}/api/auth.revoke",
    }


@contextmanager
def slack_server(client_secret: str, **options) -> Iterator[tuple[Slack, str]]:
    """Serve a Slack stand-in on 127.0.0.1 in a thread; yields it and its base URL."""
    slack = Slack("1234.5678", client_secret, **options)
    with serve_in_thread(slack.app(), free_port()) as base:
        yield slack, base
