"""A connection's provider, spoken to over HTTP: the local stand-ins for Slack and GitHub answer as those services
do (their OAuth dialects: Slack's user tokens under authed_user and comma-separated scopes, GitHub's 200-with-error
answers and grant deletion), and a generic OAuth 2.0 provider found by discovery."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.connections.provider import ConnectionProvider, ProviderRefused, ProviderUnreachable
from bastion.settings.connections import ConnectionSettings
from tests.clocks import Clock
from tests.github_mock import github_server
from tests.local_server import free_port, serve_in_thread
from tests.slack_mock import slack_entry, slack_server

SECRET_ENV = "BASTION_TEST_CONNECTION_SECRET"
REDIRECT = "http://127.0.0.1:8000/connections/callback/slack"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "s3cret")


def approve(base: str, url: str, **overrides: str) -> dict[str, str]:
    """Play the user on the stand-in's consent page; the query the provider sends back to the callback."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    answer = httpx.post(f"{base}{urlsplit(url).path}", data={**query, "decision": "allow", **overrides})
    assert answer.status_code == 302, answer.text
    return {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}


async def test_slack_user_token_flow_renewal_and_revocation():
    clock = Clock()
    with slack_server("s3cret", rotation=True, clock=clock) as (slack, base):
        provider = ConnectionProvider(ConnectionSettings(**slack_entry(base, SECRET_ENV)), clock=clock)
        scopes = provider.scopes_to_ask(["chat:write", "users:read"])
        url = await provider.authorization_url(REDIRECT, "st", "c" * 43, scopes)
        query = parse_qs(urlsplit(url).query)
        # Slack's dialect: user-token scopes in user_scope, comma-separated; PKCE offered.
        assert query["user_scope"] == ["chat:write,users:read"] and "scope" not in query
        assert query["code_challenge_method"] == ["S256"] and query["state"] == ["st"]
        verifier = "v" * 50
        import base64
        import hashlib

        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        url = await provider.authorization_url(REDIRECT, "st", challenge, scopes)
        back = approve(base, url)
        token = await provider.exchange(back["code"], REDIRECT, verifier, scopes)
        assert token["access_token"].startswith("xoxe.xoxp-") and token["refresh_token"].startswith("xoxe-1-")
        assert token["scopes"] == ["chat:write", "users:read"] and token["account"] == "U0ADA in Acme"
        assert token["expires_at"] == clock.now + 43_200

        renewed = await provider.refresh(token)
        assert renewed is not None and renewed["access_token"] != token["access_token"]
        assert renewed["refresh_token"] != token["refresh_token"] and renewed["account"] == "U0ADA in Acme"
        assert slack.refreshes == 1
        assert await provider.refresh(token) is None  # the rotated refresh token is spent: reconnect

        assert await provider.revoke(renewed) is True
        assert slack.revoked == [renewed["access_token"]]
        assert await provider.revoke(renewed) is False  # Slack answers {"ok": false} for a dead token


async def test_a_replayed_code_a_wrong_verifier_and_provider_errors_are_refusals():
    with slack_server("s3cret") as (slack, base):
        provider = ConnectionProvider(ConnectionSettings(**slack_entry(base, SECRET_ENV)))
        url = await provider.authorization_url(REDIRECT, "st", "A" * 43, ["chat:write"])
        back = approve(base, url)
        with pytest.raises(ProviderRefused):
            await provider.exchange(back["code"], REDIRECT, "not-the-verifier", [])
        with pytest.raises(ProviderRefused):  # the code went with the failed attempt, as at Slack
            await provider.exchange(back["code"], REDIRECT, "v" * 50, [])
        slack.refuse_next = "invalid_client_id"
        with pytest.raises(ProviderRefused, match="Slack refused"):
            await provider.exchange("x", REDIRECT, "v", [])


async def test_an_unreachable_provider_is_told_apart_from_a_refusal():
    entry = slack_entry(f"http://127.0.0.1:{free_port()}", SECRET_ENV)
    provider = ConnectionProvider(ConnectionSettings(**entry))
    with pytest.raises(ProviderUnreachable):
        await provider.exchange("code", REDIRECT, "v", [])
    assert await provider.revoke({"access_token": "xoxp-1"}) is False


async def test_github_preset_scopes_answers_and_grant_revocation():
    redirect = "http://127.0.0.1:8000/connections/callback/github"
    with github_server("gh-client", "s3cret", redirect) as (github, base):
        entry = {
            "name": "github",
            "preset": "github",
            "client_id": "gh-client",
            "client_secret_env": SECRET_ENV,
            "authorization_endpoint": f"{base}/login/oauth/authorize",
            "token_endpoint": f"{base}/login/oauth/access_token",
            "revocation_endpoint": f"{base}/api/applications/{{client_id}}/grant",
            "userinfo_endpoint": f"{base}/api/user",
        }
        provider = ConnectionProvider(ConnectionSettings(**entry))
        url = await provider.authorization_url(redirect, "st", "c" * 43, ["repo", "read:org"])
        query = parse_qs(urlsplit(url).query)
        assert query["scope"] == ["repo read:org"] and query["allow_signup"] == ["false"]
        back = approve(base, url.replace("c" * 43, ""), code_challenge="", login="octocat")
        token = await provider.exchange(back["code"], redirect, "v", ["repo", "read:org"])
        # GitHub lists granted scopes with commas; the account comes from its user API.
        assert token["scopes"] == ["repo", "read:org"] and token["account"] == "octocat"
        assert token["refresh_token"] is None and token["expires_at"] is None
        with pytest.raises(ProviderRefused):  # GitHub answers 200 {"error": ...}
            await provider.exchange(back["code"], redirect, "v", [])
        assert await provider.revoke(token) is True and github.revoked == [token["access_token"]]


async def test_generic_oauth2_by_discovery_and_rfc7009_revocation():
    revoked: list[dict] = []
    token_requests: list[tuple[str, dict]] = []

    async def metadata(request):
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "revocation_endpoint": f"{base}/revoke",
                "userinfo_endpoint": "javascript:alert(1)",  # refused by the endpoint rule: never used
            }
        )

    async def token(request):
        token_requests.append((request.headers.get("authorization", ""), dict(await request.form())))
        return JSONResponse({"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 60, "scope": "read"})

    async def revoke(request):
        revoked.append(dict(await request.form()))
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/.well-known/oauth-authorization-server", metadata),
            Route("/token", token, methods=["POST"]),
            Route("/revoke", revoke, methods=["POST"]),
        ]
    )
    with serve_in_thread(app, free_port()) as base:
        entry = {
            "name": "corp-api",
            "preset": "oauth2",
            "issuer": base,
            "client_id": "c1",
            "client_secret_env": SECRET_ENV,
            "client_auth": "basic",
        }
        provider = ConnectionProvider(ConnectionSettings(**entry))
        assert (await provider.authorization_endpoint()) == f"{base}/authorize"
        found = await provider.exchange("code", REDIRECT, "v", ["read", "write"])
        assert found["scopes"] == ["read"] and found["account"] is None
        [(authorization, form)] = token_requests
        # client_auth = "basic": the secret in the header, never in the form.
        assert authorization.startswith("Basic ") and "client_secret" not in form and form["code"] == "code"
        assert await provider.revoke(found) is True
        assert revoked == [{"token": "rt-1", "token_type_hint": "refresh_token"}]


def test_a_bad_endpoint_is_refused_when_the_provider_is_built():
    entry = {**slack_entry("http://127.0.0.1:9", SECRET_ENV), "token_endpoint": "https://ok.example/t"}
    ConnectionProvider(ConnectionSettings(**entry))
    with pytest.raises(ValueError, match="must use https"):
        ConnectionSettings(**{**entry, "token_endpoint": "http://slack.example/api"})


def test_presets_need_what_they_need():
    bare = ConnectionSettings(name="notes", preset="oauth2", client_id="x")
    assert bare.problems() == [
        'connection \'notes\': preset = "oauth2" needs issuer = "https://..." (for discovery), or '
        "authorization_endpoint and token_endpoint"
    ]
    nosecret = ConnectionSettings(name="slack", preset="slack", client_id="x")
    assert "has no client secret" in nosecret.problems()[0]
    unset = ConnectionSettings(name="slack", preset="slack", client_id="x", client_secret_env="BASTION_TEST_UNSET_X")
    assert "BASTION_TEST_UNSET_X" in unset.problems()[0]
    missing = ConnectionSettings(name="slack", preset="slack", client_id="x", client_secret_file="/nonexistent/s")
    assert "cannot read client_secret_file" in missing.problems()[0]
    notion = ConnectionProvider(
        ConnectionSettings(name="notion", preset="notion", client_id="x", client_secret_env=SECRET_ENV)
    )
    assert notion.scopes_to_ask(["anything"]) == []  # Notion has no scopes
    microsoft = ConnectionProvider(
        ConnectionSettings(
            name="ms", preset="microsoft", client_id="x", client_secret_env=SECRET_ENV, tenant="contoso.com"
        )
    )
    assert microsoft.scopes_to_ask(["Mail.Read"]) == ["Mail.Read", "offline_access"]
    assert "/contoso.com/oauth2/v2.0/" in microsoft.endpoints["token_endpoint"]
    asyncio.run(microsoft.aclose())
