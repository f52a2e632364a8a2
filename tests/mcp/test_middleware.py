"""Middleware around every MCP request: it sees the method, target, arguments and caller, and the result; it can
deny (nothing behind it runs) or time; the first registered is the outermost; its own crash tells the client
nothing of it, and what the rest of the chain raised is not blamed on it."""

from __future__ import annotations

import logging

from bastion import Call, Denied, Proceed
from tests.clients import asgi_client
from tests.mcp.conftest import ACCEPT, build_app, modern_body, modern_headers, open_session


async def call_add(client, a: int = 1, b: int = 2):
    return await client.post(
        "/mcp",
        headers=modern_headers("tools/call", "add"),
        json=modern_body("tools/call", {"name": "add", "arguments": {"a": a, "b": b}}),
    )


async def test_middleware_sees_each_request_and_its_result_outermost_first():
    ran: list[str] = []
    seen: list[tuple] = []
    app = build_app(ran)

    @app.middleware
    async def outer(call: Call, proceed: Proceed) -> dict:
        seen.append(("outer in", call.method, call.target, dict(call.arguments), call.principal, call.protocol_version))
        result = await proceed(call)
        seen.append(("outer out", result.get("structuredContent")))
        return result

    @app.middleware
    async def inner(call: Call, proceed: Proceed) -> dict:
        seen.append(("inner in", call.method))
        return await proceed(call)

    async with asgi_client(app) as client:
        answer = await call_add(client, 2, 3)
        listed = await client.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
    assert answer.status_code == 200 and answer.json()["result"]["structuredContent"] == {"result": 5}
    assert listed.status_code == 200
    assert seen == [
        ("outer in", "tools/call", "add", {"a": 2, "b": 3}, None, "2026-07-28"),
        ("inner in", "tools/call"),
        ("outer out", {"result": 5}),
        ("outer in", "tools/list", None, {}, None, "2026-07-28"),
        ("inner in", "tools/list"),
        ("outer out", None),
    ]
    assert ran == ["add"]


async def test_a_denial_is_a_clear_error_and_nothing_behind_it_runs():
    ran: list[str] = []
    reached: list[str] = []
    app = build_app(ran)

    @app.middleware
    async def no_adding(call: Call, proceed: Proceed) -> dict:
        if call.target == "add":
            raise Denied("adding is not allowed today", {"policy": "no-adding"})
        return await proceed(call)

    @app.middleware
    async def behind(call: Call, proceed: Proceed) -> dict:
        reached.append(call.method)
        return await proceed(call)

    async with asgi_client(app) as client:
        modern = await call_add(client)
        session = await open_session(client)
        legacy = await client.post(
            "/mcp",
            headers={**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"},
            json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add", "arguments": {}}},
        )
    assert modern.status_code == 403
    assert modern.json()["error"] == {
        "code": -32011,
        "message": "adding is not allowed today",
        "data": {"policy": "no-adding"},
    }
    assert legacy.status_code == 200  # a session's JSON-RPC errors travel with 200
    assert legacy.json()["error"]["code"] == -32011 and legacy.json()["id"] == 7
    assert ran == [] and "tools/call" not in reached


async def test_a_crashing_middleware_tells_the_client_nothing_of_it_and_is_named_in_the_log(caplog):
    ran: list[str] = []
    app = build_app(ran)

    @app.middleware
    async def broken(call: Call, proceed: Proceed) -> dict:
        raise RuntimeError("redis://admin:hunter2@cache")

    async with asgi_client(app) as client:
        with caplog.at_level(logging.ERROR, logger="bastion"):
            answer = await call_add(client)
    assert answer.json()["error"] == {"code": -32603, "message": "Internal error"}
    assert "hunter2" not in answer.text and ran == []
    assert any("middleware" in r.getMessage() and "broken" in r.getMessage() for r in caplog.records)


async def test_what_the_tool_raised_is_not_blamed_on_the_middleware(caplog):
    app = build_app()
    results: list[dict] = []

    @app.middleware
    async def watching(call: Call, proceed: Proceed) -> dict:
        result = await proceed(call)
        results.append(result)
        return result

    async with asgi_client(app) as client:
        with caplog.at_level(logging.ERROR, logger="bastion"):
            answer = await client.post(
                "/mcp",
                headers=modern_headers("tools/call", "fail_politely"),
                json=modern_body("tools/call", {"name": "fail_politely", "arguments": {}}),
            )
    assert answer.json()["result"]["isError"] is True and results[0]["isError"] is True
    assert not any("middleware" in r.getMessage() for r in caplog.records)
