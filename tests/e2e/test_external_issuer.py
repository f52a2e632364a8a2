"""A real authorization server in front of `bastion serve`: oidc-provider issuing RFC 9068 JWT access tokens for
Bastion's resource (RFC 8707), and the official SDK client getting one, calling tools, and stepping up when a
tool needs a scope its token lacks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import jwt
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult

from mcp import Client
from tests.upstream_oidc import login_and_consent, start_oidc_provider

from .conftest import ROOT, bastion_server, free_port
from .test_sdk_oauth import MemoryStorage, provider_for

pytestmark = pytest.mark.e2e
SERVER = ROOT / "tests" / "e2e" / "servers" / "scoped_notes.py"
REDIRECT = "http://127.0.0.1:53683/callback"
INTROSPECTION_SECRET = "introspection-secret-for-bastion-0123456789"


class ProviderUser:
    """Plays the user at the provider: signs in once, then consents to whatever is asked (cookies persist, as in a
    real browser, so a step-up shows only the consent page). Records every scope it was asked for."""

    def __init__(self, login: str) -> None:
        self.login = login
        self.browser = httpx.AsyncClient(timeout=10)
        self.asked: list[str] = []
        self.result: AuthorizationCodeResult | None = None

    async def open(self, url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        self.asked.append(query["scope"][0])
        back = await login_and_consent(self.browser, url, self.login)
        location = back.headers["location"]
        assert location.startswith(REDIRECT + "?"), location
        answer = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert "error" not in answer, answer
        self.result = AuthorizationCodeResult(code=answer["code"], state=answer.get("state"), iss=answer.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


@contextmanager
def deploy(tmp_path, token_format: str = "jwt") -> Iterator[tuple[str, str]]:
    """oidc-provider as the authorization server for Bastion's /mcp, and Bastion trusting it. Opaque tokens are
    introspected with the provider's one static confidential client."""
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    env = {"RESOURCE": resource, "REGISTRATION": "1", "RESOURCE_TOKEN_FORMAT": token_format}
    with start_oidc_provider("bastion-rs", INTROSPECTION_SECRET, REDIRECT, extra_env=env) as issuer:
        config = tmp_path / "bastion.toml"
        config.write_text(
            "\n".join(
                [
                    "[resource]",
                    'required_scopes = ["notes:read"]',
                    "[[resource.issuers]]",
                    'name = "corp"',
                    f'issuer = "{issuer}"',
                    'introspection_client_id = "bastion-rs"',
                    'introspection_client_secret_env = "CORP_INTROSPECTION"',
                ]
            )
        )
        server_env = {"BASTION_CONFIG": str(config), "CORP_INTROSPECTION": INTROSPECTION_SECRET}
        with bastion_server(SERVER, env=server_env, port=port) as url:
            assert url == resource
            yield issuer, url


@pytest.fixture
def deployment(tmp_path):
    with deploy(tmp_path) as running:
        yield running


def client_for(url: str, storage: MemoryStorage, user: ProviderUser) -> OAuthClientProvider:
    return provider_for(url, storage, user, REDIRECT, "SDK e2e against an external issuer")


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_sdk_client_gets_a_jwt_from_the_issuer_and_steps_up(deployment, mode):
    issuer, url = deployment
    storage, user = MemoryStorage(), ProviderUser("carol")
    provider = client_for(url, storage, user)
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        # The 401 asked for notes:read only, so that is what the first token carries.
        me = json.loads((await client.call_tool("who_am_i", {})).content[0].text)
        assert me["subject"] == "corp:carol" and me["scopes"] == ["notes:read"]
        assert user.asked[0].split() == ["notes:read", "offline_access"]
        first = storage.tokens.access_token
        claims = jwt.decode(first, options={"verify_signature": False})
        assert claims["iss"] == issuer and claims["aud"] == url
        assert jwt.get_unverified_header(first)["typ"] == "at+jwt"
        assert [t.name for t in (await client.list_tools()).tools] == ["who_am_i", "list_notes"]

        # add_note needs notes:write: a 403 insufficient_scope, a second authorization, and the call goes through.
        added = await client.call_tool("add_note", {"text": "from the SDK"})
        assert not added.is_error and added.content[0].text == "added 'from the SDK'"
        assert len(user.asked) == 2 and set(user.asked[1].split()) == {"notes:read", "notes:write", "offline_access"}
        assert storage.tokens.access_token != first
        me = json.loads((await client.call_tool("who_am_i", {})).content[0].text)
        assert me["scopes"] == ["notes:read", "notes:write"]
        assert "add_note" in [t.name for t in (await client.list_tools()).tools]
    await user.browser.aclose()


async def test_the_first_token_cannot_write_and_other_audiences_are_refused(deployment):
    issuer, url = deployment
    metadata = httpx.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")).json()
    assert metadata == {
        "resource": url,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["notes:read", "notes:write"],
    }
    anonymous = httpx.post(url, json={}, headers={"accept": "application/json, text/event-stream"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].endswith('scope="notes:read"')
    # The provider's own opaque tokens (for its userinfo endpoint) are not tokens for this resource.
    refused = httpx.post(url, json={}, headers={"authorization": "Bearer some-opaque-userinfo-token"})
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    # A 1 MB token over the real HTTP stack: refused before any parsing or key fetching, never a 500.
    try:
        huge = httpx.post(url, json={}, headers={"authorization": "Bearer " + "a" * 1_000_000}, timeout=10)
    except httpx.RemoteProtocolError:
        pass  # the HTTP server may hang up on a header this size, which is an answer too
    else:
        assert huge.status_code == 431, huge.status_code  # past the request head's bound: never parsed


async def test_opaque_tokens_from_the_issuer_are_introspected(tmp_path):
    with deploy(tmp_path, "opaque") as (_, url):
        storage, user = MemoryStorage(), ProviderUser("dave")
        async with (
            httpx2.AsyncClient(auth=client_for(url, storage, user), timeout=30) as http,
            Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client,
        ):
            me = json.loads((await client.call_tool("who_am_i", {})).content[0].text)
            assert me["subject"] == "corp:dave" and me["scopes"] == ["notes:read"]
            assert storage.tokens.access_token.count(".") == 0  # opaque: only introspection can tell
            assert (await client.call_tool("add_note", {"text": "opaque"})).content[0].text == "added 'opaque'"
            assert len(user.asked) == 2
        await user.browser.aclose()
