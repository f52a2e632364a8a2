"""Streamable HTTP at the wire, against a real server: what no SDK client exercises (2025-06-18 sessions,
answering a server request by POST, one GET stream per session)."""

from __future__ import annotations

import json

import httpx
import pytest

from bastion.mcp.errors import INVALID_REQUEST
from tests.answers import jsonrpc_error
from tests.messages import initialize

from .conftest import ROOT, bastion_server

pytestmark = pytest.mark.e2e
FEATURES = ROOT / "tests" / "e2e" / "servers" / "features.py"
ACCEPT = {"accept": "application/json, text/event-stream"}


async def sse_messages(response: httpx.Response):
    async for line in response.aiter_lines():
        if line.startswith("data: ") and line[6:].strip():
            yield json.loads(line[6:])


async def open_session(client: httpx.AsyncClient, url: str, version: str, capabilities: dict) -> dict[str, str]:
    body = initialize(version)
    body["params"]["capabilities"] = capabilities
    response = await client.post(url, headers=ACCEPT, json=body)
    assert response.json()["result"]["protocolVersion"] == version
    headers = {**ACCEPT, "mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": version}
    await client.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


async def test_a_2025_06_18_session_answers_an_elicitation_by_post():
    with bastion_server(FEATURES) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = await open_session(client, url, "2025-06-18", {"elicitation": {}})
            call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "signup", "arguments": {}}}
            async with client.stream("POST", url, headers=headers, json=call) as response:
                assert response.headers["content-type"] == "text/event-stream"
                asked = 0
                async for message in sse_messages(response):
                    if message.get("method") == "elicitation/create":
                        # 2025-06-18 has no elicitation modes: the request carries none.
                        assert "mode" not in message["params"]
                        answer = {"ok": True} if asked else {"name": "Lin", "age": 30}
                        asked += 1
                        reply = {
                            "jsonrpc": "2.0",
                            "id": message["id"],
                            "result": {"action": "accept", "content": answer},
                        }
                        posted = await client.post(url, headers=headers, json=reply)
                        assert posted.status_code == 202
                    elif message.get("id") == 7:
                        assert message["result"]["content"][0]["text"] == "Lin (30) confirmed=True"
                        break
            assert asked == 2
            # URL elicitation arrived in 2025-11-25: this session's tool fails cleanly.
            visit = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "visit", "arguments": {}}}
            result = (await client.post(url, headers=headers, json=visit)).json()["result"]
            assert result["isError"] is True and "2025-11-25" in result["content"][0]["text"]


async def test_one_get_stream_per_session_and_notifications_on_it():
    with bastion_server(FEATURES) as url:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = await open_session(client, url, "2025-11-25", {})
            stream_headers = {**headers, "accept": "text/event-stream"}
            async with client.stream("GET", url, headers=stream_headers) as stream:
                assert stream.status_code == 200
                second = await client.get(url, headers=stream_headers)
                jsonrpc_error(second, 409, INVALID_REQUEST)
                await client.post(
                    url,
                    headers=headers,
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "tools/call",
                        "params": {"name": "add_tool", "arguments": {"name": "raw_extra"}},
                    },
                )
                async for message in sse_messages(stream):
                    assert message["method"] == "notifications/tools/list_changed"
                    break
            deleted = await client.delete(url, headers=headers)
            assert deleted.status_code == 204
            jsonrpc_error(await client.get(url, headers=stream_headers), 404, INVALID_REQUEST)
