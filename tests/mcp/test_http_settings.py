"""Settings that change how the endpoint answers: session cap, JSON-only, stateless legacy, custom path."""

from contextlib import AbstractAsyncContextManager

import httpx

from bastion.mcp.errors import INVALID_REQUEST
from tests.answers import jsonrpc_error
from tests.clients import asgi_client, local_settings
from tests.messages import initialize

from .conftest import ACCEPT, build_app, modern_body, modern_headers, open_session


def client_with(**settings) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return asgi_client(build_app(), local_settings(**settings))


async def test_session_cap_answers_503():
    async with client_with(max_sessions=2) as client:
        await open_session(client)
        await open_session(client)
        third = await client.post(
            "/mcp",
            headers=ACCEPT,
            json=initialize("2025-11-25"),
        )
        jsonrpc_error(third, 503, INVALID_REQUEST)
        assert "mcp-session-id" not in third.headers


async def test_stateless_legacy_serves_without_sessions():
    async with client_with(stateful=False) as client:
        init = await client.post(
            "/mcp",
            headers=ACCEPT,
            json=initialize("2025-06-18"),
        )
        assert init.status_code == 200 and "mcp-session-id" not in init.headers
        call = await client.post(
            "/mcp",
            headers={**ACCEPT, "mcp-protocol-version": "2025-06-18"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 1}},
            },
        )
        assert call.json()["result"]["structuredContent"] == {"result": 2}
        # Asking the client needs a session: the tool fails cleanly instead.
        ask = await client.post(
            "/mcp", headers=ACCEPT, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ask"}}
        )
        assert ask.json()["result"]["isError"] is True
        no_stream = await client.get("/mcp", headers={"accept": "text/event-stream"})
        jsonrpc_error(no_stream, 405, INVALID_REQUEST)
        assert no_stream.headers["allow"] == "POST"


async def test_json_only_mode_never_streams():
    async with client_with(json_response=True) as client:
        session = await open_session(client)
        response = await client.post(
            "/mcp",
            headers={**ACCEPT, "mcp-session-id": session},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 1, "b": 1}, "_meta": {"progressToken": "p"}},
            },
        )
        assert response.headers["content-type"] == "application/json"
        assert response.json()["result"]["structuredContent"] == {"result": 2}


async def test_custom_path_and_trailing_slash():
    async with client_with(path="/tools/mcp") as client:
        for path in ("/tools/mcp", "/tools/mcp/"):
            response = await client.post(path, headers=modern_headers("tools/list"), json=modern_body("tools/list"))
            assert response.status_code == 200 and response.json()["result"]["tools"], path
        default = await client.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
        assert default.status_code == 404 and default.text == "Not Found"  # not an MCP endpoint at all


async def test_get_stream_needs_event_stream_accept_and_a_session():
    async with client_with() as client:
        session = await open_session(client)
        as_json = await client.get("/mcp", headers={"accept": "application/json", "mcp-session-id": session})
        jsonrpc_error(as_json, 406, INVALID_REQUEST)
        no_session = await client.get("/mcp", headers={"accept": "text/event-stream"})
        assert "Mcp-Session-Id" in jsonrpc_error(no_session, 400, INVALID_REQUEST)["message"]
        unknown = await client.get("/mcp", headers={"accept": "text/event-stream", "mcp-session-id": "nope"})
        jsonrpc_error(unknown, 404, INVALID_REQUEST)
        resume = await client.get(
            "/mcp", headers={"accept": "text/event-stream", "mcp-session-id": session, "last-event-id": "s99.1"}
        )
        jsonrpc_error(resume, 404, INVALID_REQUEST)
