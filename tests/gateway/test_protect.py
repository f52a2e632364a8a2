"""bastion.protect: an MCP server written with the official SDK, or with FastMCP, served in this process behind
Bastion's front door. The SDK's own client signs in through Bastion's authorization server and calls its tools;
the server sees who calls (Starlette's conventions and Bastion's) and never the token; without a valid token
nothing reaches it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastmcp import FastMCP
from fastmcp.server.dependencies import get_http_request
from mcp.server.mcpserver import Context, MCPServer

from bastion import SettingsError, protect
from tests.clients import local_settings
from tests.e2e.test_sdk_oauth import HeadlessBrowser, MemoryStorage, call_tool_text, provider_for
from tests.local_server import free_port, serve_in_thread
from tests.oauth.conftest import settings

SEEN: list[dict] = []  # what the protected server saw of each call


def seen(request: Any) -> str:
    SEEN.append(
        {
            "user": request.user.identity,
            "authenticated": request.user.is_authenticated,
            "scopes": list(request.auth.scopes),
            "principal": request.scope["bastion.principal"].subject,
            "authorization": request.headers.get("authorization"),
        }
    )
    return str(request.user.display_name)


def sdk_app() -> Any:
    server = MCPServer("notes")

    @server.tool()
    async def who_am_i(ctx: Context) -> str:
        """Who is calling, as the request says."""
        return seen(ctx.request_context.request)

    return server.streamable_http_app()


def fastmcp_app() -> Any:
    server = FastMCP("notes")

    @server.tool
    async def who_am_i() -> str:
        """Who is calling, as the request says."""
        return seen(get_http_request())

    return server.http_app()


@pytest.fixture(scope="module", params=[sdk_app, fastmcp_app], ids=["official SDK", "FastMCP"])
def base(request):
    protected = protect(request.param(), settings())
    with serve_in_thread(protected, free_port()) as url:
        yield url


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_the_sdk_client_signs_in_through_bastion_and_the_server_sees_the_caller_not_the_token(base, mode):
    SEEN.clear()
    url = f"{base}/mcp"
    storage, browser = MemoryStorage(), HeadlessBrowser("lin")
    assert await call_tool_text(url, provider_for(url, storage, browser), "who_am_i", mode) == "dev:lin"
    [seen] = SEEN
    assert seen["user"] == "dev:lin" and seen["authenticated"] and seen["principal"] == "dev:lin"
    assert seen["authorization"] is None  # the bearer token never reaches the protected server
    assert seen["scopes"] and set(seen["scopes"]) <= set((storage.tokens.scope or "").split()), seen
    assert storage.tokens is not None and storage.tokens.access_token not in repr(seen)


async def test_without_a_valid_token_nothing_reaches_the_protected_server(base):
    SEEN.clear()
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "who_am_i", "arguments": {}}}
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    async with httpx.AsyncClient(base_url=base) as http:
        missing = await http.post("/mcp", json=call, headers=headers)
        assert missing.status_code == 401
        assert (
            f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
            in missing.headers["www-authenticate"]
        )
        forged = await http.post("/mcp", json=call, headers={**headers, "authorization": "Bearer forged.token.here"})
        assert forged.status_code == 401 and 'error="invalid_token"' in forged.headers["www-authenticate"]
        # The application's other paths are behind the gate too; Bastion's own are Bastion's.
        assert (await http.get("/anything-else")).status_code == 401
        metadata = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert metadata["resource"] == f"{base}/mcp" and metadata["authorization_servers"] == [base]
        assert (await http.get("/.well-known/oauth-authorization-server")).json()["issuer"] == base
    assert SEEN == []


def test_protect_refuses_settings_that_would_check_nobody():
    with pytest.raises(SettingsError, match=r"protect: nothing would check callers; turn on \[authorization_server\]"):
        protect(sdk_app(), local_settings(store={"backend": "memory"}))
