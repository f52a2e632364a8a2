"""Sign-in through GitHub (a local server speaking GitHub's OAuth app protocol and user API): the SDK client signs
in, a tool calls GitHub's API with the user's GitHub token, and ending the grant revokes it at GitHub."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.github_mock import github_server

from .conftest import bastion_server, free_port
from .test_sdk_oauth import FEATURES, MemoryStorage, UpstreamUser, call_tool_text, provider_for

pytestmark = pytest.mark.e2e
CLIENT_ID, CLIENT_SECRET = "Iv1.bastion-e2e", "github-secret-" + "y" * 24


async def authorize_at_github(browser: httpx.AsyncClient, url: str, login: str) -> httpx.Response:
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    return await browser.post(httpx.URL(url).join("/login/oauth/authorize"), data={**fields, "login": login})


async def test_github_sign_in_api_call_and_revocation(tmp_path):
    port = free_port()
    with github_server(CLIENT_ID, CLIENT_SECRET, f"http://127.0.0.1:{port}/callback/github") as (github, base):
        config = tmp_path / "bastion.toml"
        config.write_text(
            f'[authorization_server]\nenabled = true\n[store]\npath = "{tmp_path / "bastion.db"}"\n'
            f'[[authorization_server.upstream]]\nname = "github"\nkind = "github"\nissuer = "{base}"\n'
            f'api_url = "{base}/api"\nclient_id = "{CLIENT_ID}"\nclient_secret_env = "GITHUB_CLIENT_SECRET"\n'
        )
        env = {"GITHUB_CLIENT_SECRET": CLIENT_SECRET, "FEATURES_GITHUB_API": f"{base}/api"}
        with bastion_server(FEATURES, "--config", str(config), env=env, port=port) as url:
            storage = MemoryStorage()
            provider = provider_for(url, storage, UpstreamUser("octocat", authorize_at_github))
            who = await call_tool_text(url, provider, "who_am_i")
            assert who.startswith("Principal(subject='github:5000'") and "gho_" not in who
            assert await call_tool_text(url, provider, "github_login") == "octocat"
            [token] = github.tokens
            # No passthrough: GitHub only ever saw GitHub's own token, never Bastion's.
            assert storage.tokens.access_token not in github.seen_bearers and set(github.seen_bearers) == {token}
            async with httpx.AsyncClient() as http:
                revoked = await http.post(
                    url.removesuffix("/mcp") + "/revoke",
                    data={"client_id": storage.client.client_id, "token": storage.tokens.refresh_token},
                )
                assert revoked.status_code == 200
            assert github.revoked == [token] and not github.tokens
