"""The upstream OpenID provider the end-to-end tests use works on its own: no Bastion here.

A hand-made OIDC client signs "ada" in through the real oidc-provider (login form, consent), exchanges the code with
PKCE, calls userinfo, refreshes, revokes and introspects.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

import httpx
import pytest

from tests.upstream_oidc import login_and_consent, login_and_consent_sync, start_oidc_provider
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e

CLIENT_ID = "bastion-upstream"
CLIENT_SECRET = "upstream-secret-" + "x" * 16
REDIRECT_URI = "http://127.0.0.1:9/oauth/upstream/callback"  # never fetched: the helper stops at its redirect
CREDENTIALS = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(metadata: dict[str, Any], challenge: str | None, state: str, nonce: str, scope: str) -> str:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": state,
        "nonce": nonce,
    }
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    return str(httpx.URL(metadata["authorization_endpoint"], params=params))


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def exchange(http: httpx.AsyncClient, metadata: dict[str, Any], code: str, verifier: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    return await http.post(metadata["token_endpoint"], data={**data, **CREDENTIALS})


async def refresh(http: httpx.AsyncClient, metadata: dict[str, Any], refresh_token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await http.post(metadata["token_endpoint"], data={**data, **CREDENTIALS})


async def test_code_flow_userinfo_refresh_revoke() -> None:
    with start_oidc_provider(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI, "http://127.0.0.1:9/other"]) as issuer:
        paths: list[str] = []

        async def record(request: httpx.Request) -> None:
            paths.append(request.url.path)

        browser = httpx.AsyncClient(timeout=10, event_hooks={"request": [record]})
        async with httpx.AsyncClient(timeout=10) as http, browser:
            metadata = (await http.get(f"{issuer}/.well-known/openid-configuration")).json()
            assert metadata["issuer"] == issuer
            assert metadata["code_challenge_methods_supported"] == ["S256"]
            assert "client_secret_post" in metadata["token_endpoint_auth_methods_supported"]
            assert {"openid", "profile", "email", "offline_access", "notes:read"} <= set(metadata["scopes_supported"])

            verifier, challenge = pkce_pair()
            state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            url = authorize_url(metadata, challenge, state, nonce, "openid profile email notes:read")
            callback = await login_and_consent(browser, url, "ada")
            # /auth, the login page and form, /auth/<uid>, the consent page and form, /auth/<uid>
            assert len(paths) == 7, paths
            location = httpx.URL(callback.headers["location"])
            assert str(location.copy_with(query=None)) == REDIRECT_URI
            assert location.params["state"] == state
            assert location.params["iss"] == issuer
            assert "_session" in browser.cookies  # the provider's cookies live in httpx's jar over plain http

            exchanged = await exchange(http, metadata, location.params["code"], verifier)
            assert exchanged.status_code == 200, exchanged.text
            tokens = exchanged.json()
            assert tokens["token_type"] == "Bearer"
            assert {"access_token", "id_token", "refresh_token"} <= tokens.keys()  # no offline_access asked
            assert set(tokens["scope"].split()) == {"openid", "profile", "email", "notes:read"}
            id_token = jwt_claims(tokens["id_token"])
            assert (id_token["iss"], id_token["aud"], id_token["sub"]) == (issuer, CLIENT_ID, "ada")
            assert id_token["nonce"] == nonce

            bearer = {"authorization": f"Bearer {tokens['access_token']}"}
            userinfo = await http.get(metadata["userinfo_endpoint"], headers=bearer)
            assert userinfo.status_code == 200, userinfo.text
            assert userinfo.json() == {"sub": "ada", "name": "Ada", "email": "ada@example.test", "email_verified": True}

            # Refresh with client_secret_basic: the client registered for client_secret_post accepts both.
            refreshed = await http.post(
                metadata["token_endpoint"],
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                auth=(CLIENT_ID, CLIENT_SECRET),
            )
            assert refreshed.status_code == 200, refreshed.text
            fresh = refreshed.json()
            assert fresh["access_token"] != tokens["access_token"]
            assert "notes:read" in fresh["scope"].split()
            assert jwt_claims(fresh["id_token"])["sub"] == "ada"

            introspected = await http.post(
                metadata["introspection_endpoint"], data={"token": fresh["access_token"], **CREDENTIALS}
            )
            assert introspected.json()["active"] is True
            assert introspected.json()["sub"] == "ada"

            # The same browser is sent straight back: its session and the grant are remembered.
            paths.clear()
            url = authorize_url(metadata, pkce_pair()[1], "s2", "n2", "openid")
            again = await login_and_consent(browser, url, "ada")
            assert httpx.URL(again.headers["location"]).params["state"] == "s2"
            assert paths == ["/auth"]

            # Revoking an access token revokes every token of its grant, the refresh token too, but keeps the
            # consent (revoking a refresh token, or replaying a code, drops the consent as well).
            revoked = await http.post(
                metadata["revocation_endpoint"],
                data={"token": fresh["access_token"], "token_type_hint": "access_token", **CREDENTIALS},
            )
            assert revoked.status_code == 200, revoked.text
            introspected = await http.post(
                metadata["introspection_endpoint"], data={"token": fresh["access_token"], **CREDENTIALS}
            )
            assert introspected.json() == {"active": False}
            gone = await http.get(
                metadata["userinfo_endpoint"], headers={"authorization": f"Bearer {fresh['access_token']}"}
            )
            assert gone.status_code == 401
            dead = await refresh(http, metadata, tokens["refresh_token"])
            assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"

            paths.clear()
            verifier, challenge = pkce_pair()
            third = await login_and_consent(browser, authorize_url(metadata, challenge, "s3", "n3", "openid"), "ada")
            assert paths == ["/auth"]
            code = httpx.URL(third.headers["location"]).params["code"]
            assert (await exchange(http, metadata, code, verifier)).status_code == 200

            # A replayed code is refused and, as RFC 6749 §4.1.2 allows, revokes the grant it came from.
            replay = await exchange(http, metadata, code, verifier)
            assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
            paths.clear()
            fourth = await login_and_consent(browser, authorize_url(metadata, challenge, "s4", "n4", "openid"), "ada")
            assert "code" in httpx.URL(fourth.headers["location"]).params
            assert len(paths) == 4, paths  # /auth, the consent page and form, /auth/<uid>: no login this time


def test_pkce_required_and_access_token_ttl() -> None:
    with (
        start_oidc_provider(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, access_token_ttl=1) as issuer,
        httpx.Client(timeout=10) as http,
        httpx.Client(timeout=10) as browser,
    ):
        metadata = http.get(f"{issuer}/.well-known/openid-configuration").json()

        refused = login_and_consent_sync(browser, authorize_url(metadata, None, "s0", "n0", "openid"), "bob")
        params = httpx.URL(refused.headers["location"]).params
        assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]

        verifier, challenge = pkce_pair()
        url = authorize_url(metadata, challenge, "s1", "n1", "openid email offline_access")
        callback = login_and_consent_sync(browser, url, "bob")
        code = httpx.URL(callback.headers["location"]).params["code"]

        wrong = http.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": pkce_pair()[0],
                **CREDENTIALS,
            },
        )
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"

        # A wrong verifier does not use the code up.
        exchanged = http.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                **CREDENTIALS,
            },
        )
        assert exchanged.status_code == 200, exchanged.text
        tokens = exchanged.json()
        assert tokens["expires_in"] == 1
        assert "refresh_token" in tokens
        assert jwt_claims(tokens["id_token"])["sub"] == "bob"
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        # The provider's own clock decides: ask until it refuses the token (no fixed sleep past expires_in).
        wait_until(lambda: http.get(metadata["userinfo_endpoint"], headers=bearer).status_code != 200, "expiry")
        expired = http.get(metadata["userinfo_endpoint"], headers=bearer)
        assert expired.status_code == 401 and "invalid_token" in expired.headers["www-authenticate"]
