"""A local stand-in for github.com and api.github.com, speaking GitHub's OAuth app protocol and user API.

Endpoints as GitHub has them: GET /login/oauth/authorize (here: a one-button page standing in for GitHub's sign-in
and authorize screens), POST /login/oauth/access_token (form in, JSON out with Accept: application/json; errors
as 200 with an "error" member, like GitHub), GET /api/user (Bearer), DELETE /api/applications/{client_id}/grant
(Basic client credentials). PKCE S256 is checked when the authorization request carried a challenge.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.local_server import free_port, serve_in_thread


@dataclass
class GitHub:
    client_id: str
    client_secret: str
    redirect_uri: str
    codes: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> login
    revoked: list[str] = field(default_factory=list)
    users: dict[str, int] = field(default_factory=dict)
    seen_bearers: list[str] = field(default_factory=list)  # every token presented to the API

    def user_id(self, login: str) -> int:
        return self.users.setdefault(login, 5_000 + len(self.users))

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id or q.get("redirect_uri") != self.redirect_uri:
            return HTMLResponse("<p>The redirect_uri MUST match the registered callback URL.</p>", 400)
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in q.items())
        return HTMLResponse(
            f'<form method="post" action="/login/oauth/authorize">{hidden}'
            '<input name="login" value="octocat"><button type="submit">Authorize</button></form>'
        )

    async def approve(self, request: Request) -> Response:
        form = await request.form()
        code = secrets.token_hex(10)
        self.codes[code] = {
            "login": form["login"],
            "challenge": form.get("code_challenge"),
            "redirect_uri": form["redirect_uri"],
            "scope": form.get("scope", ""),
        }
        return RedirectResponse(f"{form['redirect_uri']}?{urlencode({'code': code, 'state': form['state']})}", 302)

    async def access_token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return JSONResponse({"error": "incorrect_client_credentials"})
        grant = self.codes.pop(str(form.get("code")), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "bad_verification_code"})
        if grant["challenge"]:
            verifier = str(form.get("code_verifier", ""))
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if computed != grant["challenge"]:
                return JSONResponse({"error": "bad_verification_code"})
        token = "gho_" + secrets.token_hex(18)
        self.tokens[token] = grant["login"]
        return JSONResponse({"access_token": token, "token_type": "bearer", "scope": ",".join(grant["scope"].split())})

    async def user(self, request: Request) -> Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.seen_bearers.append(token)
        login = self.tokens.get(token)
        if login is None:
            return JSONResponse({"message": "Bad credentials"}, 401)
        return JSONResponse(
            {"id": self.user_id(login), "login": login, "name": login.title(), "email": f"{login}@example.test"}
        )

    async def revoke_grant(self, request: Request) -> Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"message": "Not Found"}, 404)
        token = (await request.json()).get("access_token")
        if self.tokens.pop(token, None) is not None:
            self.revoked.append(token)
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/login/oauth/authorize", self.authorize, methods=["GET"]),
                Route("/login/oauth/authorize", self.approve, methods=["POST"]),
                Route("/login/oauth/access_token", self.access_token, methods=["POST"]),
                Route("/api/user", self.user, methods=["GET"]),
                Route("/api/applications/{client_id}/grant", self.revoke_grant, methods=["DELETE"]),
            ]
        )


@contextmanager
def github_server(client_id: str, client_secret: str, redirect_uri: str) -> Iterator[tuple[GitHub, str]]:
    """Serve a GitHub stand-in on 127.0.0.1 in a thread; yields it and its base URL."""
    github = GitHub(client_id, client_secret, redirect_uri)
    with serve_in_thread(github.app(), free_port()) as base:
        yield github, base
