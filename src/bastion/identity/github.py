"""GitHub (an OAuth app, no OpenID Connect): authorization code with PKCE, the user from GitHub's REST API.

The subject is "<name>:<numeric GitHub id>", stable across renames. Tokens of OAuth apps do not expire; those
of GitHub Apps with expiring tokens come with a refresh token and are renewed. Revocation deletes the grant
through the API (DELETE /applications/{client_id}/grant), as GitHub documents.

Its endpoints are built from the configured web and API URLs, which are held to the same rule as a discovered
provider's endpoints (security/endpoints.py): a bad one is refused when the provider is built, at start-up.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlencode

import httpx

from ..security.endpoints import endpoint_problem
from .upstream import TokenEndpointProvider, UpstreamIdentity, UpstreamLoginError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHubProvider(TokenEndpointProvider):
    scope_separator = ","  # GitHub lists granted scopes comma-separated

    def __init__(
        self,
        name: str,
        web_url: str,
        api_url: str,
        client_id: str,
        client_secret: str,
        scopes: list[str],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.web_url = web_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        for label, url in (("web URL", self.web_url), ("API URL", self.api_url)):
            problem = endpoint_problem(url)
            if problem is None and "?" in url:
                problem = "has a query"
            if problem is not None:
                raise ValueError(f"upstream {name!r}: the GitHub {label} {problem}")
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = scopes
        self.http = http or httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)

    async def discovery(self) -> dict[str, Any]:
        return {"authorization_endpoint": f"{self.web_url}/login/oauth/authorize"}

    async def authorization_url(self, redirect_uri: str, state: str, code_challenge: str, nonce: str) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
                "allow_signup": "false",
            }
        )
        return f"{self.web_url}/login/oauth/authorize?{query}"

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        form = {**form, "client_id": self.client_id, "client_secret": self.client_secret}
        try:
            response = await self.http.post(
                f"{self.web_url}/login/oauth/access_token", data=form, headers={"Accept": "application/json"}
            )
            tokens = response.json()
        except (httpx.HTTPError, ValueError):
            raise UpstreamLoginError(f"{self.name} did not answer") from None
        # GitHub answers errors with 200 and an "error" member.
        if response.status_code != 200 or not isinstance(tokens, dict) or "access_token" not in tokens:
            raise UpstreamLoginError(f"{self.name} refused the token request")
        return tokens

    async def exchange(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> UpstreamIdentity:
        tokens = await self._token_request({"code": code, "redirect_uri": redirect_uri, "code_verifier": code_verifier})
        try:
            response = await self.http.get(
                f"{self.api_url}/user", headers={**API_HEADERS, "Authorization": f"Bearer {tokens['access_token']}"}
            )
            user = response.json()
        except (httpx.HTTPError, ValueError):
            raise UpstreamLoginError(f"{self.name}'s API did not answer") from None
        if response.status_code != 200 or not isinstance(user, dict) or not isinstance(user.get("id"), int):
            raise UpstreamLoginError(f"{self.name}'s API did not describe the user")
        claims = {"login": user.get("login"), "name": user.get("name") or user.get("login"), "email": user.get("email")}
        return UpstreamIdentity(
            user_id=str(user["id"]), claims={k: v for k, v in claims.items() if v}, token=self._token(tokens)
        )

    async def revoke(self, token: dict[str, Any]) -> None:
        # Best effort: if GitHub cannot be reached, the token stays usable only at GitHub, never through Bastion.
        with contextlib.suppress(httpx.HTTPError):
            await self.http.request(
                "DELETE",
                f"{self.api_url}/applications/{self.client_id}/grant",
                headers=API_HEADERS,
                json={"access_token": token["access_token"]},
                auth=(self.client_id, self.client_secret),
            )
