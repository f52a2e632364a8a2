"""One provider users connect accounts at: its authorization URL, the code exchanged for a token, the token
renewed and revoked, each in the dialect its preset describes (presets.py).

A token is kept as a plain dict: access_token, refresh_token, expires_at (seconds since the epoch, or None),
scopes (as granted, or as asked when the provider does not say), account (who it is at the provider, shown to
the user; never a secret). Every URL the browser is sent to or a secret is posted to passes the endpoint rule
(security/endpoints.py), whether it came from the settings, a preset or a discovery document.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from ..security.endpoints import endpoint_problem
from ..settings.connections import ConnectionSettings
from .presets import PRESETS, Preset

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_ANSWER_BYTES = 64 * 1024
_SCOPES = re.compile(r"[ ,]+")  # providers write granted scopes with spaces (RFC 6749) or commas (GitHub, Slack)


class ProviderRefused(Exception):
    """The provider refused (or answered something unusable); the message is safe to show the user."""


class ProviderUnreachable(Exception):
    """The provider could not be reached or did not answer in time; the message is safe to show."""


def _generic(settings: ConnectionSettings) -> Preset:
    return Preset(
        label=settings.label or settings.name.capitalize(),
        authorization_endpoint=settings.authorization_endpoint or "",
        token_endpoint=settings.token_endpoint or "",
        revocation="rfc7009" if settings.revocation_endpoint else "none",
        revocation_endpoint=settings.revocation_endpoint,
        userinfo_endpoint=settings.userinfo_endpoint,
    )


class ConnectionProvider:
    def __init__(
        self,
        settings: ConnectionSettings,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        preset = PRESETS.get(settings.preset) or _generic(settings)
        self.preset = preset
        self.label = settings.label or preset.label
        self.client_id = settings.client_id
        self.client_secret = settings.client_secret() or ""
        self.pkce = preset.pkce if settings.pkce is None else settings.pkce
        self.client_auth = settings.client_auth or preset.client_auth
        self.http = http or httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        self.clock = clock
        tenant = settings.tenant
        self.endpoints: dict[str, str | None] = {
            "authorization_endpoint": settings.authorization_endpoint
            or preset.authorization_endpoint.replace("/common/", f"/{tenant}/")
            or None,
            "token_endpoint": settings.token_endpoint
            or preset.token_endpoint.replace("/common/", f"/{tenant}/")
            or None,
            "revocation_endpoint": settings.revocation_endpoint or preset.revocation_endpoint,
            "userinfo_endpoint": settings.userinfo_endpoint or preset.userinfo_endpoint,
        }
        self._discovered = settings.preset != "oauth2" or not settings.issuer
        for name, url in self.endpoints.items():
            if url is not None and (problem := endpoint_problem(url.replace("{client_id}", "x"))):
                raise ValueError(f"connection {self.name!r}: its {name} {problem}")

    # --- discovery (preset = "oauth2" with an issuer) ------------------------------------------------------
    async def _endpoints(self) -> dict[str, str | None]:
        if not self._discovered:
            await self._discover()
        return self.endpoints

    async def _discover(self) -> None:
        issuer = str(self.settings.issuer).rstrip("/")
        document: dict[str, Any] | None = None
        for suffix in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            with contextlib.suppress(ProviderRefused):
                document = await self._get_json(issuer + suffix)
                break
        if document is None:
            raise ProviderUnreachable(f"{self.label} did not publish its endpoints")
        for name in self.endpoints:
            value = document.get(name)
            if self.endpoints[name] is None and isinstance(value, str) and endpoint_problem(value) is None:
                self.endpoints[name] = value
        if not self.endpoints["authorization_endpoint"] or not self.endpoints["token_endpoint"]:
            raise ProviderRefused(f"{self.label}'s discovery document has no usable endpoints")
        if self.revocation == "none" and self.endpoints["revocation_endpoint"]:
            self.preset = Preset(**{**self.preset.__dict__, "revocation": "rfc7009"})
        self._discovered = True

    async def authorization_endpoint(self) -> str:
        """Where the browser is sent (discovered first, if it must be)."""
        return str((await self._endpoints())["authorization_endpoint"])

    @property
    def revocation(self) -> str:
        return self.preset.revocation

    # --- the flow -----------------------------------------------------------------------------------------
    def scopes_to_ask(self, needed: list[str] | tuple[str, ...]) -> list[str]:
        """The configured scopes, the ones a tool needs, and the one without which there is no refresh token."""
        if not self.preset.scopes:
            return []
        wanted = [*self.settings.scopes, *needed]
        if self.preset.refresh_scope:
            wanted.append(self.preset.refresh_scope)
        return list(dict.fromkeys(wanted))

    async def authorization_url(self, redirect_uri: str, state: str, challenge: str, scopes: list[str]) -> str:
        endpoints = await self._endpoints()
        query: dict[str, str] = {
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "state": state,
            **self.preset.authorize_params,
        }
        if scopes:
            query[self.preset.scope_param] = self.preset.scope_separator.join(scopes)
        if self.pkce:
            query["code_challenge"], query["code_challenge_method"] = challenge, "S256"
        base = str(endpoints["authorization_endpoint"])
        return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"

    async def exchange(self, code: str, redirect_uri: str, verifier: str, asked: list[str]) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if self.pkce:
            form["code_verifier"] = verifier
        answer = await self._token_request(form)
        token = self._token(answer, asked)
        token["account"] = _account_in(answer) or await self._account(token["access_token"])
        return token

    async def refresh(self, token: dict[str, Any]) -> dict[str, Any] | None:
        """The renewed token, or None when the provider will not renew it (the user must connect again).
        ProviderUnreachable when it cannot be asked now."""
        if not token.get("refresh_token"):
            return None
        try:
            answer = await self._token_request({"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
        except ProviderRefused:
            return None
        renewed = self._token(answer, list(token.get("scopes") or ()))
        renewed["refresh_token"] = renewed["refresh_token"] or token.get("refresh_token")  # not rotated: kept
        renewed["account"] = token.get("account")
        return renewed

    async def revoke(self, token: dict[str, Any]) -> bool:
        """Revoke the token at the provider; False if it could not be (then it is only forgotten here)."""
        endpoints = await self._endpoints()
        url = endpoints["revocation_endpoint"]
        style = self.revocation
        if style == "none" or not url:
            return False
        url = url.replace("{client_id}", self.client_id)
        access = str(token.get("access_token", ""))
        try:
            if style == "github_grant":
                response = await self.http.request(
                    "DELETE",
                    url,
                    json={"access_token": access},
                    auth=(self.client_id, self.client_secret),
                    headers={"Accept": "application/vnd.github+json"},
                )
            elif style == "bearer":
                response = await self.http.post(url, headers={"Authorization": f"Bearer {access}"})
            elif style == "notion":
                response = await self.http.post(
                    url, json={"token": access}, auth=(self.client_id, self.client_secret), headers=self.preset.headers
                )
            else:  # RFC 7009: the refresh token, which takes the access tokens issued under it along
                which = token.get("refresh_token") or access
                kind = "refresh_token" if token.get("refresh_token") else "access_token"
                response = await self._authenticated_post(url, {"token": which, "token_type_hint": kind})
        except httpx.HTTPError:
            return False
        if response.status_code >= 300:
            return False
        with contextlib.suppress(ValueError):
            body = response.json()
            if isinstance(body, dict) and body.get("ok") is False:  # Slack answers 200 {"ok": false}
                return False
        return True

    # --- the wire -----------------------------------------------------------------------------------------
    async def _authenticated_post(self, url: str, form: dict[str, str]) -> httpx.Response:
        headers = dict(self.preset.headers)
        auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
        if self.client_auth == "basic" and self.client_secret:
            auth = httpx.BasicAuth(self.client_id, self.client_secret)
        else:
            form = {**form, "client_id": self.client_id}
            if self.client_secret:
                form["client_secret"] = self.client_secret
        if self.preset.json_body:
            return await self.http.post(url, json=form, auth=auth, headers=headers)
        return await self.http.post(url, data=form, auth=auth, headers=headers)

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        endpoints = await self._endpoints()
        try:
            response = await self._authenticated_post(str(endpoints["token_endpoint"]), form)
        except httpx.HTTPError:
            raise ProviderUnreachable(f"{self.label} did not answer") from None
        if len(response.content) > MAX_ANSWER_BYTES:
            raise ProviderRefused(f"{self.label} answered too much")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 500:
            raise ProviderUnreachable(f"{self.label} is not answering properly (HTTP {response.status_code})")
        # GitHub and Slack answer errors with 200 and an error member ({"ok": false} for Slack).
        if (
            response.status_code != 200
            or not isinstance(answer, dict)
            or "error" in answer
            or answer.get("ok") is False
        ):
            raise ProviderRefused(f"{self.label} refused the token request")
        holder = answer.get(self.preset.token_in) if self.preset.token_in else None
        if isinstance(holder, dict) and "access_token" in holder:
            answer = {**answer, **holder}  # Slack: the user's token is in authed_user
        if not isinstance(answer.get("access_token"), str) or not answer["access_token"]:
            raise ProviderRefused(f"{self.label} answered without an access token")
        return answer

    def _token(self, answer: dict[str, Any], asked: list[str]) -> dict[str, Any]:
        granted = answer.get("scope")
        expires_in = answer.get("expires_in")
        return {
            "access_token": answer["access_token"],
            "refresh_token": answer.get("refresh_token") if isinstance(answer.get("refresh_token"), str) else None,
            "expires_at": self.clock() + expires_in if isinstance(expires_in, int) and expires_in > 0 else None,
            "scopes": [s for s in _SCOPES.split(granted) if s] if isinstance(granted, str) else list(asked),
        }

    async def _account(self, access_token: str) -> str | None:
        """Who the token is, by the provider's user info (best effort: None if it will not say)."""
        url = (await self._endpoints())["userinfo_endpoint"]
        if not url:
            return None
        try:
            info = await self._get_json(url, {"Authorization": f"Bearer {access_token}"})
        except ProviderRefused:
            return None
        for key in ("login", "email", "preferred_username", "name", "sub", "account_id"):
            if isinstance(info.get(key), str) and info[key]:
                return str(info[key])[:200]
        return None

    async def _get_json(self, url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A JSON object from `url` (read up to MAX_ANSWER_BYTES); ProviderRefused for anything else."""
        try:
            response = await self.http.get(url, headers={"Accept": "application/json", **(headers or {})})
            body = response.json() if len(response.content) <= MAX_ANSWER_BYTES else None
        except (httpx.HTTPError, ValueError):
            raise ProviderRefused(f"{url} did not answer") from None
        if response.status_code != 200 or not isinstance(body, dict):
            raise ProviderRefused(f"{url} answered {response.status_code}")
        return body

    async def aclose(self) -> None:
        await self.http.aclose()


def _account_in(answer: dict[str, Any]) -> str | None:
    """Who the token is, when the token response says (Slack's team and user, Notion's workspace)."""
    team = answer.get("team")
    user = answer.get("id") if answer.get("token_type") == "user" else None
    if isinstance(team, dict) and isinstance(team.get("name"), str):
        return f"{user} in {team['name']}"[:200] if isinstance(user, str) else str(team["name"])[:200]
    workspace = answer.get("workspace_name")
    return str(workspace)[:200] if isinstance(workspace, str) and workspace else None
