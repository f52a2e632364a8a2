"""One table maps MCP errors to HTTP status: every code and every transport refusal has its row, the endpoint
answers each refusal at the table's status with a JSON-RPC body, and no status number hides elsewhere."""

import ast
import asyncio
from pathlib import Path

import orjson
import pytest

from bastion.mcp import errors
from bastion.mcp.errors import (
    FORBIDDEN,
    HTTP_STATUS,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    McpError,
    Refusal,
    Refused,
    http_status,
)
from bastion.mcp.http import StreamableHTTP
from bastion.mcp.policy import InsufficientScope
from tests.clients import asgi_client, local_settings
from tests.messages import initialize

from .conftest import ACCEPT, build_app, modern_body, modern_headers, open_session

MCP_SOURCE = Path(__file__).resolve().parents[2] / "src" / "bastion" / "mcp"


def test_every_code_and_refusal_has_a_row():
    codes = {value for name, value in vars(errors).items() if name.isupper() and isinstance(value, int) and value < 0}
    assert codes and codes | set(Refusal) == set(HTTP_STATUS)


@pytest.mark.parametrize(
    "error, in_session, status",
    [
        (McpError(METHOD_NOT_FOUND, "x"), False, 404),
        (McpError(INVALID_PARAMS, "x"), False, 400),
        (McpError(INTERNAL_ERROR, "x"), False, 200),
        (McpError(-1, "a tool's own code"), False, 200),
        # Inside a legacy session an answered request is 200 whatever its error, except the scope refusal.
        (McpError(METHOD_NOT_FOUND, "x"), True, 200),
        (McpError(INVALID_PARAMS, "x"), True, 200),
        (InsufficientScope("tool 'x'", ["admin"]), True, 403),
        (InsufficientScope("tool 'x'", ["admin"]), False, 403),
        (Refused(Refusal.SESSION_NOT_FOUND, "Session not found"), False, 404),
    ],
)
def test_status_comes_from_the_table(error, in_session, status):
    assert http_status(error, in_session=in_session) == status


def test_a_refusal_is_an_invalid_request_on_the_wire():
    refused = Refused(Refusal.PAYLOAD_TOO_LARGE, "too big")
    assert refused.to_error() == {"code": INVALID_REQUEST, "message": "too big"}
    assert http_status(refused) == 413 and http_status(McpError(INVALID_REQUEST, "too big")) == 400
    assert InsufficientScope("x", ["a"]).code == FORBIDDEN


def test_no_status_number_is_chosen_outside_the_table():
    """An error status written as a literal anywhere in the engine would be a second source."""
    found = []
    for path in MCP_SOURCE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "http_status":
                found.append(f"{path.name}:{node.value.lineno} http_status=")
            if isinstance(node, ast.Call):
                values = [*node.args, *(k.value for k in node.keywords)]
            elif isinstance(node, ast.Dict):
                pairs = zip(node.keys, node.values, strict=True)
                values = [v for k, v in pairs if isinstance(k, ast.Constant) and k.value == "status"]
            else:
                continue
            for value in values:
                if isinstance(value, ast.Constant) and type(value.value) is int and 300 <= value.value < 600:
                    found.append(f"{path.name}:{value.lineno} {value.value}")
    assert found == []


# --- the endpoint answers every refusal at the table's status ----------------------------------------------
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


async def refusals(client, session):
    modern = modern_headers("tools/list")
    stream = {"accept": "text/event-stream", "mcp-session-id": session}
    yield Refusal.METHOD_NOT_ALLOWED, await client.put("/mcp", content=b"")
    yield Refusal.UNSUPPORTED_MEDIA_TYPE, await client.post("/mcp", headers={**modern, "content-type": "text/plain"})
    yield Refusal.NOT_ACCEPTABLE, await client.post("/mcp", headers={**modern, "accept": "text/html"}, json=LIST)
    yield Refusal.NOT_ACCEPTABLE, await client.get("/mcp", headers={"accept": "text/html", "mcp-session-id": session})
    yield Refusal.PAYLOAD_TOO_LARGE, await client.post("/mcp", headers=modern, json={"pad": "x" * 2_048})
    yield Refusal.SESSION_NOT_FOUND, await client.post("/mcp", headers={**ACCEPT, "mcp-session-id": "guess"}, json=LIST)
    yield Refusal.STREAM_NOT_FOUND, await client.get("/mcp", headers={**stream, "last-event-id": "s9.1"})
    yield Refusal.TOO_MANY_SESSIONS, await client.post("/mcp", headers=ACCEPT, json=initialize())


async def test_every_refusal_gets_its_status_and_a_json_rpc_body():
    async with asgi_client(build_app(), local_settings(max_sessions=1, max_body_bytes=1_024)) as client:
        session = await open_session(client)
        seen = set()
        async for refusal, response in refusals(client, session):
            seen.add(refusal)
            assert response.status_code == HTTP_STATUS[refusal], refusal
            body = response.json()
            # A refusal answers the request's id when it could read one (a POST naming a session).
            assert body["id"] == (1 if refusal is Refusal.SESSION_NOT_FOUND else None), refusal
            assert body["error"]["code"] == INVALID_REQUEST, refusal
            assert response.headers["content-type"] == "application/json"
        # A second GET stream needs the first one held open: test_a_second_stream_is_a_conflict below; shared
        # sessions whose store is down: tests/test_shared_sessions.py.
        assert seen | {Refusal.STREAM_CONFLICT, Refusal.SESSIONS_UNAVAILABLE} == set(Refusal)
        # Refused requests changed nothing: the one session is still the only one, and still works.
        still = await client.post("/mcp", headers={**ACCEPT, "mcp-session-id": session}, json=LIST)
        assert still.status_code == 200 and still.json()["result"]["tools"]


async def test_json_rpc_errors_before_dispatch_follow_their_code(client):
    unknown = await client.post("/mcp", headers=modern_headers("x/y"), json=modern_body("x/y"))
    assert unknown.status_code == HTTP_STATUS[METHOD_NOT_FOUND] == 404
    no_session = await client.post("/mcp", headers=ACCEPT, json=LIST)
    assert no_session.status_code == HTTP_STATUS[INVALID_REQUEST] == 400
    assert no_session.json()["error"] == {
        "code": INVALID_REQUEST,
        "message": "Bad Request: Mcp-Session-Id header is required",
    }


async def test_a_second_stream_is_a_conflict():
    app = build_app()
    endpoint = StreamableHTTP(app.server(local_settings()), app.broadcaster)
    sent: list[dict] = []
    opened = asyncio.Event()
    leave = asyncio.Event()

    async def send(message):
        sent.append(message)
        opened.set()

    async def no_body():
        return {"type": "http.request", "body": orjson.dumps(initialize()), "more_body": False}

    def scope(method, headers):
        return {
            "type": "http",
            "method": method,
            "path": "/mcp",
            "headers": [(k.encode(), v.encode()) for k, v in headers],
        }

    await endpoint(scope("POST", [("content-type", "application/json"), *ACCEPT.items()]), no_body, send)
    session = dict(sent[0]["headers"])[b"mcp-session-id"].decode()
    sent.clear()
    opened.clear()

    async def stay():
        await leave.wait()
        return {"type": "http.disconnect"}

    get = [("accept", "text/event-stream"), ("mcp-session-id", session)]
    first = asyncio.create_task(endpoint(scope("GET", get), stay, send))
    await opened.wait()
    assert sent[0]["status"] == 200
    second: list[dict] = []

    async def record(message):
        second.append(message)

    await endpoint(scope("GET", get), stay, record)
    assert second[0]["status"] == HTTP_STATUS[Refusal.STREAM_CONFLICT] == 409
    assert orjson.loads(second[1]["body"])["error"]["code"] == INVALID_REQUEST
    leave.set()
    await first
    # The first stream closed: the session may open one again.
    assert not endpoint.sessions.get(session).stream_open
