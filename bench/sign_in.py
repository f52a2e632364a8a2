"""Tokens for the benchmarks, through the real flow of Bastion's own authorization server: register, authorize,
consent, dev login, token. `access_token` serves one bench target; `grants` obtains a pool of grants (one
refresh token each) for the refresh benchmark."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT = "http://127.0.0.1:1/callback"
Verify = ssl.SSLContext | bool


async def register(base: str, verify: Verify = True) -> str:
    """A new public client (no secret); its client_id."""
    async with httpx.AsyncClient(base_url=base, timeout=30, verify=verify) as http:
        answer = await http.post("/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
        answer.raise_for_status()
        return str(answer.json()["client_id"])


async def grant(base: str, client_id: str, verify: Verify = True) -> dict[str, Any]:
    """One sign-in as `bench` (a new grant): the token response (access and refresh token)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    client = {"client_id": client_id, "redirect_uri": REDIRECT}
    # An HTTP client of its own per sign-in, so that no cookie from another sign-in is sent.
    async with httpx.AsyncClient(base_url=base, timeout=30, verify=verify) as http:
        pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
        start = await http.get("/authorize", params={**client, "response_type": "code", **pkce})
        # The consent screen: its CSRF token comes in the form and in a __Host- cookie, sent by hand because
        # Python's cookie jar keeps Secure cookies from plain-http loopback (browsers send them there).
        page = await http.get(start.headers["location"])
        fields = dict(re.findall(r'name="(transaction|csrf_token)" value="([^"]*)"', page.text))
        cookie = page.headers["set-cookie"].split(";", 1)[0]
        approved = await http.post("/consent", data={**fields, "decision": "approve"}, headers={"cookie": cookie})
        form = await http.get(approved.headers["location"])
        transaction = re.search(r'name="transaction" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        back = await http.post("/login/dev", data={"transaction": transaction, "username": "bench"})
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        exchange = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
        tokens = await http.post("/token", data={**client, **exchange})
        tokens.raise_for_status()
        return dict(tokens.json())


def access_token(base: str, verify: Verify = True) -> str:
    """An access token for the server at `base` (a new client and grant)."""

    async def flow() -> str:
        return str((await grant(base, await register(base, verify), verify))["access_token"])

    return asyncio.run(flow())


def grants(base: str, count: int, parallel: int = 8) -> tuple[str, list[str]]:
    """`count` grants of one new client, `parallel` sign-ins at a time: (client_id, their refresh tokens)."""

    async def flow() -> tuple[str, list[str]]:
        client_id = await register(base)
        gate = asyncio.Semaphore(parallel)

        async def one() -> str:
            async with gate:
                return str((await grant(base, client_id))["refresh_token"])

        return client_id, list(await asyncio.gather(*(one() for _ in range(count))))

    return asyncio.run(flow())


def authorization_server() -> dict[str, str]:
    """Settings (environment) for instances running the authorization server with dev login, sharing secrets."""
    return {
        "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
        "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
        "BASTION_STATE_SECRET": secrets.token_urlsafe(32),
        "BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET": secrets.token_urlsafe(32),
    }
