"""The official SDK client's OAuth support against `bastion serve` with the built-in authorization server:
discovery, registration, authorization with PKCE and resource, token, tools/call, refresh, revocation."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider, OAuthFlowError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from mcp import Client
from tests.browser import walk, walk_upstream
from tests.security.test_fetch import pki  # noqa: F401 - the throwaway CA and cimd.test certificate
from tests.tls_documents import document_server

from .conftest import ROOT, bastion_server

pytestmark = pytest.mark.e2e
FEATURES = ROOT / "tests" / "e2e" / "servers" / "features.py"
REDIRECT = "http://127.0.0.1:53682/callback"


def auth_env(tmp_path) -> dict[str, str]:
    return {
        "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
        "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
        "BASTION_STORE__PATH": str(tmp_path / "bastion.db"),
    }


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class HeadlessBrowser:
    """Plays the user: opens the authorize URL, signs in on the dev login page, and catches the redirect."""

    def __init__(self, username: str = "ada") -> None:
        self.username = username
        self.result: AuthorizationCodeResult | None = None
        self.visits = 0

    async def open(self, url: str) -> None:
        self.visits += 1
        async with httpx.AsyncClient(follow_redirects=False, timeout=10) as browser:
            back = await walk(browser, url, self.username)
            assert back.status_code == 303, back.text
            location = back.headers["location"]
            assert location.startswith(REDIRECT + "?")
            query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
            self.result = AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


class UpstreamUser:
    """The user signing in through an upstream provider: Bastion's pages in one browser session, the provider's
    in another (each keeps its own cookies); `sign_in_upstream` plays the provider's pages."""

    def __init__(self, login: str, sign_in_upstream) -> None:
        self.login = login
        self.sign_in_upstream = sign_in_upstream
        self.result: AuthorizationCodeResult | None = None

    async def open(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=10) as bastion, httpx.AsyncClient(timeout=10) as provider:
            back = await walk_upstream(bastion, provider, url, self.login, self.sign_in_upstream)
            assert back.status_code == 302 and back.headers["location"].startswith(REDIRECT), back.text
            query = {k: v[0] for k, v in parse_qs(urlsplit(back.headers["location"]).query).items()}
            self.result = AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def provider_for(
    url: str, storage: MemoryStorage, browser: Any, redirect: str = REDIRECT, client_name: str = "SDK e2e"
) -> OAuthClientProvider:
    """The SDK's OAuth client as a public native app; `browser` plays the user (open, then callback)."""
    metadata = OAuthClientMetadata(
        redirect_uris=[redirect],
        client_name=client_name,
        token_endpoint_auth_method="none",
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )
    return OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=storage,
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )


async def call_tool_text(
    url: str, provider: OAuthClientProvider, tool: str, mode: str = "2026-07-28", arguments: dict | None = None
) -> str:
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        result = await client.call_tool(tool, arguments or {})
        return result.content[0].text


async def call_who_am_i(url: str, provider: OAuthClientProvider, mode: str) -> str:
    return await call_tool_text(url, provider, "who_am_i", mode)


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_dynamic_registration_flow_refresh_and_revocation(tmp_path, mode):
    with bastion_server(FEATURES, env=auth_env(tmp_path)) as url:
        storage, browser = MemoryStorage(), HeadlessBrowser()
        text = await call_who_am_i(url, provider_for(url, storage, browser), mode)
        assert text.startswith("Principal(subject='dev:ada'") and browser.visits == 1
        assert storage.client is not None and storage.client.client_id
        first = storage.tokens
        assert first is not None and first.refresh_token

        # An expired access token is refreshed without the browser, and the refresh token rotates.
        storage.tokens = OAuthToken(
            access_token="expired.token",
            token_type="Bearer",
            expires_in=-1,
            refresh_token=first.refresh_token,
            scope=first.scope,
        )
        provider = provider_for(url, storage, browser)
        provider.context.token_expiry_time = 1.0  # long past (0 would mean "unknown", i.e. valid)
        assert (await call_who_am_i(url, provider, mode)).startswith("Principal(subject='dev:ada'")
        assert browser.visits == 1 and storage.tokens.refresh_token != first.refresh_token

        # Revoked: the server answers 401 to the old access token.
        async with httpx.AsyncClient() as http:
            base = url.removesuffix("/mcp")
            revoked = await http.post(
                f"{base}/revoke", data={"client_id": storage.client.client_id, "token": storage.tokens.refresh_token}
            )
            assert revoked.status_code == 200
            probe = await http.post(
                url,
                headers={
                    "authorization": f"Bearer {storage.tokens.access_token}",
                    "content-type": "application/json",
                    "accept": "application/json, text/event-stream",
                },
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            )
            assert probe.status_code == 401 and 'error="invalid_token"' in probe.headers["www-authenticate"]


async def test_the_client_refuses_a_forged_issuer(tmp_path):
    """The SDK checks the RFC 9207 iss Bastion sends; a tampered one must stop the flow."""
    with bastion_server(FEATURES, env=auth_env(tmp_path)) as url:
        storage, browser = MemoryStorage(), HeadlessBrowser()

        async def forged_callback() -> AuthorizationCodeResult:
            result = await browser.callback()
            return AuthorizationCodeResult(code=result.code, state=result.state, iss="https://evil.example")

        provider = provider_for(url, storage, browser)
        provider.context.callback_handler = forged_callback
        with pytest.raises(ExceptionGroup) as caught:  # raised inside the client's task group
            await call_who_am_i(url, provider, "2026-07-28")
        refusal = caught.value.subgroup(OAuthFlowError)
        assert refusal is not None and "iss mismatch: https://evil.example" in str(refusal.exceptions[0]), caught.value
        assert storage.tokens is None  # the code was never exchanged


async def test_client_id_metadata_document_flow(tmp_path, pki):  # noqa: F811
    async with document_server(pki) as documents:
        document_url = documents.serve_document(
            "/sdk/client.json", redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"]
        )
        env = {
            **auth_env(tmp_path),
            "BASTION_AUTHORIZATION_SERVER__METADATA_DOCUMENT_CA_FILE": str(pki["ca"]),
            "BASTION_AUTHORIZATION_SERVER__METADATA_DOCUMENT_HOSTS": "cimd.test=127.0.0.1",
        }
        with bastion_server(FEATURES, env=env) as url:
            storage, browser = MemoryStorage(), HeadlessBrowser("grace")
            metadata = OAuthClientMetadata(
                redirect_uris=[REDIRECT], client_name="SDK CIMD", token_endpoint_auth_method="none"
            )
            provider = OAuthClientProvider(
                server_url=url,
                client_metadata=metadata,
                storage=storage,
                redirect_handler=browser.open,
                callback_handler=browser.callback,
                client_metadata_url=document_url,
            )
            text = await call_who_am_i(url, provider, "2026-07-28")
            assert text.startswith("Principal(subject='dev:grace'")
            assert f"client_id='{document_url}'" in text  # the document URL is the client id
            assert storage.client is not None and storage.client.client_id == document_url
            assert documents.hits["/sdk/client.json"] >= 1
