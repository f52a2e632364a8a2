"""Sign-in through a real upstream OpenID Connect provider (npm oidc-provider): the official SDK client starts
authorization, the user approves on Bastion's consent screen, signs in upstream, and the client calls a tool
that uses the upstream token. With the hostile cases beside it."""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser import consent, cookie_header, set_cookies, start_authorization
from tests.upstream_oidc import login_and_consent, start_oidc_provider
from tests.waiting import eventually

from .conftest import bastion_server, free_port
from .test_sdk_oauth import FEATURES, REDIRECT, MemoryStorage, UpstreamUser, call_tool_text, provider_for

pytestmark = pytest.mark.e2e
CLIENT_ID, CLIENT_SECRET = "bastion-e2e", "upstream-secret-" + "x" * 24


@contextmanager
def upstream_and_bastion(directory, access_token_ttl: int | None = None):
    port = free_port()
    with start_oidc_provider(
        CLIENT_ID, CLIENT_SECRET, f"http://127.0.0.1:{port}/callback/corp", access_token_ttl=access_token_ttl
    ) as issuer:
        config = directory / "bastion.toml"
        config.write_text(
            f'[authorization_server]\nenabled = true\n[store]\npath = "{directory / "bastion.db"}"\n'
            f'[[authorization_server.upstream]]\nname = "corp"\nissuer = "{issuer}"\nclient_id = "{CLIENT_ID}"\n'
            'client_secret_env = "CORP_CLIENT_SECRET"\nscopes = ["openid", "profile", "email", "notes:read"]\n'
        )
        env = {
            "CORP_CLIENT_SECRET": CLIENT_SECRET,
            "FEATURES_UPSTREAM_USERINFO": f"{issuer}/me",
            "FEATURES_UPSTREAM_CLIENT_ID": CLIENT_ID,
        }
        with bastion_server(FEATURES, "--config", str(config), env=env, port=port) as url:
            yield url, issuer


@pytest.fixture(scope="module")
def upstream_setup(tmp_path_factory):
    with upstream_and_bastion(tmp_path_factory.mktemp("upstream")) as setup:
        yield setup


async def test_the_sdk_client_signs_in_upstream_and_a_tool_uses_the_upstream_token(upstream_setup):
    url, _ = upstream_setup
    storage, browser = MemoryStorage(), UpstreamUser("ada", login_and_consent)
    provider = provider_for(url, storage, browser)
    who = await call_tool_text(url, provider, "who_am_i")
    assert who.startswith("Principal(subject='corp:ada'") and "access_token" not in who
    assert await call_tool_text(url, provider, "upstream_profile") == "200 Ada"
    missing = await call_tool_text(url, provider, "upstream_admin")
    assert "did not grant: admin:write" in missing
    declared = await call_tool_text(url, provider, "upstream_declared")
    assert "cannot run" in declared and "admin:write" in declared
    # Bastion's token never goes upstream, and the upstream token never reaches the client.
    assert storage.tokens is not None and storage.tokens.access_token.count(".") == 1


async def start_to_callback(url: str) -> tuple[str, dict[str, str], httpx.Response]:
    """Register, authorize and approve; returns the upstream authorization URL, the state cookie, and the
    provider's redirect back to Bastion's callback."""
    base = url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=10) as bastion, httpx.AsyncClient(timeout=10) as upstream:
        consent_url = await start_authorization(bastion, base, REDIRECT)
        to_provider = await consent(bastion, consent_url)
        cookies = {k: v for k, v in set_cookies(to_provider).items() if k.endswith("-state")}
        back = await login_and_consent(upstream, to_provider.headers["location"], "eve")
        return to_provider.headers["location"], cookies, back


async def test_the_callback_refuses_another_browser_and_replays(upstream_setup):
    url, _ = upstream_setup
    _, cookies, back = await start_to_callback(url)
    callback = back.headers["location"]
    async with httpx.AsyncClient(timeout=10) as other_browser:
        no_cookie = await other_browser.get(callback)
        assert no_cookie.status_code == 400 and "another browser" in no_cookie.text
        name = next(iter(cookies))
        wrong = await other_browser.get(callback, headers={"cookie": f"{name}={'0' * 64}"})
        assert wrong.status_code == 400 and "another browser" in wrong.text
        ok = await other_browser.get(callback, headers=cookie_header(cookies))
        assert ok.status_code == 302 and "code=" in ok.headers["location"]
        replay = await other_browser.get(callback, headers=cookie_header(cookies))
        assert replay.status_code == 400 and "location" not in replay.headers
        assert "expired or was already completed" in replay.text


async def test_a_forged_state_or_an_upstream_refusal(upstream_setup):
    url, _ = upstream_setup
    upstream_url, cookies, back = await start_to_callback(url)
    callback = httpx.URL(back.headers["location"])
    forged = callback.copy_set_param("state", "forged-state")
    async with httpx.AsyncClient(timeout=10) as browser:
        refused = await browser.get(forged, headers=cookie_header(cookies))
        assert refused.status_code == 400 and "location" not in refused.headers
        assert "started in another browser" in refused.text  # no sign-in of this browser has that state
        # The provider says the user refused: the application hears access_denied, with its state and iss.
        state = parse_qs(urlsplit(upstream_url).query)["state"][0]
        refused = callback.copy_with(params={"error": "access_denied", "state": state})
        denied = await browser.get(refused, headers=cookie_header(cookies))
        assert denied.status_code == 302 and denied.headers["location"].startswith(REDIRECT)
        assert "error=access_denied" in denied.headers["location"] and "iss=" in denied.headers["location"]


async def test_expired_upstream_tokens_are_renewed(tmp_path):
    with upstream_and_bastion(tmp_path, access_token_ttl=2) as (url, _):
        provider = provider_for(url, MemoryStorage(), UpstreamUser("ada", login_and_consent))
        assert await call_tool_text(url, provider, "upstream_profile") == "200 Ada"

        async def first_token_expired() -> bool:  # the provider's introspection says so; no fixed sleep
            return await call_tool_text(url, provider, "upstream_remembered_active") == "False"

        await eventually(first_token_expired, "the provider calling the first upstream token inactive")
        assert await call_tool_text(url, provider, "upstream_profile") == "200 Ada"  # renewed, then used
        assert await call_tool_text(url, provider, "upstream_remembered_active") == "True"  # a new, live token


async def test_ending_the_grant_revokes_the_upstream_tokens(upstream_setup):
    url, _ = upstream_setup  # tokens live an hour here: only revocation can end them
    storage = MemoryStorage()
    provider = provider_for(url, storage, UpstreamUser("ada", login_and_consent))
    assert await call_tool_text(url, provider, "upstream_profile") == "200 Ada"
    assert await call_tool_text(url, provider, "upstream_remembered_active") == "True"
    async with httpx.AsyncClient() as http:
        revoked = await http.post(
            url.removesuffix("/mcp") + "/revoke",
            data={"client_id": storage.client.client_id, "token": storage.tokens.refresh_token},
        )
        assert revoked.status_code == 200
    other = provider_for(
        url, MemoryStorage(), UpstreamUser("bob", login_and_consent)
    )  # a check from someone still signed in
    assert await call_tool_text(url, other, "upstream_remembered_active") == "False"
