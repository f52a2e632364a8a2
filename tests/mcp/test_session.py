"""Legacy sessions are one module shared by both transports: what a session answers by itself is the same
over Streamable HTTP and stdio, and cancelling a request marks it as cancelled on purpose."""

import asyncio
import io

import orjson
import pytest

from bastion.mcp.errors import INVALID_PARAMS, INVALID_REQUEST, McpError
from bastion.mcp.jsonrpc import Notification, Request
from bastion.mcp.session import Cancellable, Session, legacy_session_method, session_notification
from bastion.mcp.stdio import StdioConnection
from tests.clients import local_settings
from tests.messages import initialize

from .conftest import ACCEPT, build_app, open_session

SESSION_REQUESTS = [
    ("ping", {}),
    ("logging/setLevel", {"level": "warning"}),
    ("logging/setLevel", {"level": "loud"}),
    ("resources/subscribe", {"uri": "test://doc"}),
    ("resources/subscribe", {"uri": 7}),
    ("resources/unsubscribe", {"uri": "test://doc"}),
    ("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}),
    ("tools/call", {"name": "missing"}),
    ("no/such/method", {}),
]


def test_session_methods_answer_and_change_only_session_state():
    session = Session("2025-11-25", {}, None)
    assert legacy_session_method(session, Request(1, "ping", {})) == {}
    assert legacy_session_method(session, Request(2, "logging/setLevel", {"level": "error"})) == {}
    assert session.log_level == "error"
    with pytest.raises(McpError) as bad_level:
        legacy_session_method(session, Request(3, "logging/setLevel", {"level": "loud"}))
    assert bad_level.value.code == INVALID_PARAMS and session.log_level == "error"  # unchanged
    legacy_session_method(session, Request(4, "resources/subscribe", {"uri": "a://b"}))
    assert session.subscriptions == {"a://b"}
    with pytest.raises(McpError):
        legacy_session_method(session, Request(5, "resources/subscribe", {"uri": ["a://c"]}))
    assert session.subscriptions == {"a://b"}
    with pytest.raises(McpError) as again:
        legacy_session_method(session, Request(6, "initialize", {}))
    assert again.value.code == INVALID_REQUEST
    assert legacy_session_method(session, Request(7, "tools/list", {})) is None  # not the session's to answer


async def test_cancelled_notification_cancels_on_purpose_and_only_its_request():
    session = Session("2025-11-25", {}, None)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    other = asyncio.create_task(hang())
    await started.wait()
    session.in_flight[1] = handle = Cancellable(task)
    session.in_flight[2] = bystander = Cancellable(other)
    for request_id in (True, None, [1], "1"):  # not this request's id: nothing is cancelled
        session_notification(session, Notification("notifications/cancelled", {"requestId": request_id}))
    assert not handle.requested and not bystander.requested
    session_notification(session, Notification("notifications/cancelled", {"requestId": 1}))
    assert handle.requested and not bystander.requested
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not other.done()
    other.cancel()


async def stdio_answers(messages: list[dict]) -> list[dict]:
    app = build_app()
    output = io.BytesIO()
    connection = StdioConnection(app.server(local_settings()), app.broadcaster, output, 1_048_576)
    for message in messages:
        await connection.receive(orjson.dumps(message))
        if connection.tasks:
            await asyncio.wait(set(connection.tasks))
    return [orjson.loads(line) for line in output.getvalue().splitlines()]


async def test_a_session_answers_the_same_over_http_and_stdio(client):
    requests = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        for i, (method, params) in enumerate(SESSION_REQUESTS, start=1)
    ]
    session = await open_session(client)
    over_http = []
    for request in requests:
        response = await client.post("/mcp", headers={**ACCEPT, "mcp-session-id": session}, json=request)
        assert response.status_code == 200  # answers inside a legacy session are 200, errors included
        over_http.append(response.json())
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    over_stdio = await stdio_answers([initialize(), initialized, *requests])
    assert over_stdio[0]["result"]["protocolVersion"] == "2025-11-25"
    assert over_stdio[1:] == over_http
    assert [("error" in answer) for answer in over_http] == [False, False, True, False, True, False, False, True, True]


async def test_stdio_refuses_session_methods_before_initialize():
    answers = await stdio_answers([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert answers == [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": INVALID_REQUEST, "message": "the connection is not initialized: send initialize first"},
        }
    ]
