"""Settings that change how the endpoint answers: session cap, JSON-only, stateless legacy, custom path."""

import httpx

from bastion.settings import Settings
from tests.messages import initialize

from .conftest import ACCEPT, build_app, modern_body, modern_headers, open_session


def client_with(**settings) -> httpx.AsyncClient:
    asgi = build_app().asgi(Settings.load(env={}, **settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1:8000")


async def test_session_cap_answers_503():
    async with client_with(max_sessions=2) as client:
        await open_session(client)
        await open_session(client)
        third = await client.post(
            "/mcp",
            headers=ACCEPT,
            json=initialize("2025-11-25"),
        )
        assert third.status_code == 503 and "mcp-session-id" not in third.headers


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
        assert (await client.get("/mcp", headers={"accept": "text/event-stream"})).status_code == 405


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


async def test_custom_path_and_trailing_slash():
    async with client_with(path="/tools/mcp") as client:
        for path in ("/tools/mcp", "/tools/mcp/"):
            response = await client.post(path, headers=modern_headers("tools/list"), json=modern_body("tools/list"))
            assert response.status_code == 200
        assert (
            await client.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
        ).status_code == 404


async def test_get_stream_needs_event_stream_accept_and_a_session():
    async with client_with() as client:
        session = await open_session(client)
        assert (
            await client.get("/mcp", headers={"accept": "application/json", "mcp-session-id": session})
        ).status_code == 406
        assert (await client.get("/mcp", headers={"accept": "text/event-stream"})).status_code == 400
        assert (
            await client.get("/mcp", headers={"accept": "text/event-stream", "mcp-session-id": "nope"})
        ).status_code == 404
        resume = await client.get(
            "/mcp", headers={"accept": "text/event-stream", "mcp-session-id": session, "last-event-id": "s99.1"}
        )
        assert resume.status_code == 404
