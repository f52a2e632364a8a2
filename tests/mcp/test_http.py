"""Streamable HTTP, request by request: the happy path next to every hostile variant."""

import orjson
import pytest

from bastion.mcp.errors import INVALID_REQUEST
from tests.answers import jsonrpc_error
from tests.messages import initialize

from .conftest import ACCEPT, META, modern_body, modern_headers, open_session


# --- the gate ---------------------------------------------------------------------------------------------
async def test_foreign_host_and_origin_get_403(client):
    body = modern_body("tools/list")
    ok = await client.post("/mcp", headers=modern_headers("tools/list"), json=body)
    assert ok.status_code == 200
    rebound = await client.post("/mcp", headers={**modern_headers("tools/list"), "host": "evil.example"}, json=body)
    assert "Host header not allowed" in jsonrpc_error(rebound, 403, -32000)["message"]
    foreign = await client.post(
        "/mcp", headers={**modern_headers("tools/list"), "origin": "https://evil.example"}, json=body
    )
    assert "Origin" in jsonrpc_error(foreign, 403, -32000)["message"]
    local_page = await client.post(
        "/mcp", headers={**modern_headers("tools/list"), "origin": "http://localhost:5173"}, json=body
    )
    assert local_page.status_code == 200


async def test_body_limits_content_type_and_malformed_json(client):
    headers = modern_headers("tools/list")
    huge = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":"' + b"x" * 2_000_000 + b'"}}'
    response = await client.post("/mcp", headers={**headers, "content-type": "application/json"}, content=huge)
    jsonrpc_error(response, 413, INVALID_REQUEST)

    async def chunks():
        for _ in range(40):
            yield b"x" * 65536

    streamed = await client.post("/mcp", headers={**headers, "content-type": "application/json"}, content=chunks())
    jsonrpc_error(streamed, 413, INVALID_REQUEST)
    wrong_type = await client.post("/mcp", headers={**headers, "content-type": "text/plain"}, content=b"{}")
    jsonrpc_error(wrong_type, 415, INVALID_REQUEST)
    for raw in (b"{nope", b"[]", b"[" * 5000 + b"]" * 5000, b'{"jsonrpc":"2.0","id":1,"method":7}'):
        bad = await client.post("/mcp", headers={**headers, "content-type": "application/json"}, content=raw)
        assert bad.status_code == 400, raw[:20]
        assert bad.json()["error"]["code"] in (-32700, -32600)
        assert bad.json()["id"] is None


async def test_unknown_http_methods_get_405(client):
    jsonrpc_error(await client.put("/mcp", content=b""), 405, INVALID_REQUEST)
    elsewhere = await client.get("/elsewhere")
    assert elsewhere.status_code == 404 and elsewhere.text == "Not Found"
    assert (await client.get("/healthz")).json() == {"status": "ok"}


# --- 2026-07-28 -----------------------------------------------------------------------------------------------
async def test_discover_and_call_statelessly(client):
    response = await client.post("/mcp", headers=modern_headers("server/discover"), json=modern_body("server/discover"))
    result = response.json()["result"]
    assert "2026-07-28" in result["supportedVersions"] and "2025-06-18" in result["supportedVersions"]
    assert result["resultType"] == "complete" and result["ttlMs"] == 0 and result["cacheScope"] == "private"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == {"name": "test-server", "version": "1.2.3"}
    assert "mcp-session-id" not in response.headers

    call = await client.post(
        "/mcp",
        headers=modern_headers("tools/call", "add"),
        json=modern_body("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}),
    )
    result = call.json()["result"]
    assert result["structuredContent"] == {"result": 5} and result["content"][0]["text"] == "5"
    assert result["resultType"] == "complete"


@pytest.mark.parametrize(
    "headers, body, status, code",
    [
        # Mcp-Method missing, then disagreeing with the body
        ({"mcp-protocol-version": "2026-07-28"}, modern_body("tools/list"), 400, -32020),
        (modern_headers("tools/call", "add"), modern_body("tools/list"), 400, -32020),
        # Mcp-Name missing, then naming another tool than the body runs
        (modern_headers("tools/call"), modern_body("tools/call", {"name": "add"}), 400, -32020),
        (modern_headers("tools/call", "crash"), modern_body("tools/call", {"name": "add"}), 400, -32020),
        # header version disagreeing with _meta
        (
            modern_headers("tools/list"),
            {
                **modern_body("tools/list"),
                "params": {"_meta": {**META, "io.modelcontextprotocol/protocolVersion": "2025-11-25"}},
            },
            400,
            -32020,
        ),
        # _meta without a version, or without client capabilities
        (
            modern_headers("tools/list"),
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/list",
                "params": {"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}},
            },
            400,
            -32602,
        ),
        (
            modern_headers("tools/list"),
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/list",
                "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}},
            },
            400,
            -32602,
        ),
        # no _meta at all
        (modern_headers("tools/list"), {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, 400, -32602),
        # unknown method, and legacy-only methods, are not found in 2026-07-28
        (modern_headers("nope/nope"), modern_body("nope/nope"), 404, -32601),
        (modern_headers("ping"), modern_body("ping"), 404, -32601),
    ],
)
async def test_modern_requests_that_disagree_with_themselves_are_refused(client, ran, headers, body, status, code):
    response = await client.post("/mcp", headers=headers, json=body)
    jsonrpc_error(response, status, code)
    assert ran == []  # refused before any tool ran


async def test_unsupported_version_lists_what_is_supported(client):
    headers = {**modern_headers("tools/list"), "mcp-protocol-version": "2099-01-01"}
    response = await client.post("/mcp", headers=headers, json=modern_body("tools/list"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022 and error["data"]["requested"] == "2099-01-01"
    assert "2026-07-28" in error["data"]["supported"]


async def test_modern_body_without_version_header_is_a_mismatch(client):
    response = await client.post("/mcp", headers={**ACCEPT, "mcp-method": "tools/list"}, json=modern_body("tools/list"))
    assert response.status_code == 400 and response.json()["error"]["code"] == -32020


async def test_no_get_or_delete_in_2026(client):
    for verb in ("GET", "DELETE"):
        response = await client.request(verb, "/mcp", headers={**modern_headers("x"), "accept": "text/event-stream"})
        jsonrpc_error(response, 405, INVALID_REQUEST)


async def test_tool_failures_are_results_not_crashes(client):
    async def call(name, arguments):
        response = await client.post(
            "/mcp",
            headers=modern_headers("tools/call", name),
            json=modern_body("tools/call", {"name": name, "arguments": arguments}),
        )
        assert response.status_code == 200
        return response.json()

    polite = (await call("fail_politely", {}))["result"]
    assert polite["isError"] is True and polite["content"][0]["text"] == "the widget is out of stock"
    crash = (await call("crash", {}))["result"]
    assert crash["isError"] is True and "hunter2" not in orjson.dumps(crash).decode()
    bad_args = (await call("add", {"a": "one"}))["result"]
    assert bad_args["isError"] is True and "a:" in bad_args["content"][0]["text"]
    response = await client.post(
        "/mcp", headers=modern_headers("tools/call", "missing"), json=modern_body("tools/call", {"name": "missing"})
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == -32602


async def test_multi_round_trip_elicitation_and_forged_state(client, ran):
    body = modern_body("tools/call", {"name": "ask", "arguments": {"greeting": "hi"}})
    first = (await client.post("/mcp", headers=modern_headers("tools/call", "ask"), json=body)).json()["result"]
    assert first["resultType"] == "input_required"
    [(key, question)] = first["inputRequests"].items()
    assert question["method"] == "elicitation/create" and question["params"]["mode"] == "form"
    state = first["requestState"]

    def retry(arguments, request_state, answer):
        params = {"name": "ask", "arguments": arguments, "requestState": request_state, "inputResponses": {key: answer}}
        return client.post("/mcp", headers=modern_headers("tools/call", "ask"), json=modern_body("tools/call", params))

    accepted = {"action": "accept", "content": {"name": "Ada"}}
    done = (await retry({"greeting": "hi"}, state, accepted)).json()["result"]
    assert done["content"][0]["text"] == "hi Ada" and done["resultType"] == "complete"

    # Answers given up front, without a state, are the client's own to give: each reaches its question; an answer
    # under another key is ignored, and the question is asked.
    def up_front(responses):
        params = {"name": "ask", "arguments": {"greeting": "hi"}, "inputResponses": responses}
        return client.post("/mcp", headers=modern_headers("tools/call", "ask"), json=modern_body("tools/call", params))

    given = (await up_front({key: {"action": "accept", "content": {"name": "Eve"}}, "extra": {}})).json()["result"]
    assert given["resultType"] == "complete" and given["content"][0]["text"] == "hi Eve"
    again = (await up_front({"wrong_key": {"action": "accept", "content": {"name": "Eve"}}})).json()["result"]
    assert again["resultType"] == "input_required" and list(again["inputRequests"]) == [key]
    jsonrpc_error(await up_front(["not", "an", "object"]), 400, -32602)
    # State is bound to the request it came from: other arguments, a forged or altered token are refused.
    asked = len(ran)
    for arguments, request_state in [
        ({"greeting": "bye"}, state),
        ({"greeting": "hi"}, state[:-3] + "AAA"),
        ({"greeting": "hi"}, "forged"),
    ]:
        response = await retry(arguments, request_state, accepted)
        jsonrpc_error(response, 400, -32602)
    assert len(ran) == asked  # the tool did not run again for a refused state


async def test_resource_not_found_code_depends_on_the_era(client):
    response = await client.post(
        "/mcp",
        headers=modern_headers("resources/read", "test://none"),
        json=modern_body("resources/read", {"uri": "test://none"}),
    )
    assert response.json()["error"]["code"] == -32602
    session = await open_session(client)
    legacy = await client.post(
        "/mcp",
        headers={**ACCEPT, "mcp-session-id": session},
        json={"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "test://none"}},
    )
    assert legacy.json()["error"]["code"] == -32002


# --- 2025-06-18 and 2025-11-25 ----------------------------------------------------------------------------------
async def test_sessions_open_work_and_close(client):
    session = await open_session(client)
    assert len(session) >= 22  # >= 128 random bits
    headers = {**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    listed = await client.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert [t["name"] for t in listed.json()["result"]["tools"]][:2] == ["add", "fail_politely"]
    assert (await client.delete("/mcp", headers=headers)).status_code == 204
    gone = await client.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert "Session not found" in jsonrpc_error(gone, 404, INVALID_REQUEST)["message"]


async def test_legacy_requests_need_a_real_session(client):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    jsonrpc_error(await client.post("/mcp", headers=ACCEPT, json=body), 400, INVALID_REQUEST)
    forged = await client.post("/mcp", headers={**ACCEPT, "mcp-session-id": "guess"}, json=body)
    jsonrpc_error(forged, 404, INVALID_REQUEST)
    session = await open_session(client)
    bad_version = {**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "1999-01-01"}
    unsupported = jsonrpc_error(await client.post("/mcp", headers=bad_version, json=body), 400, -32022)
    assert unsupported["data"]["requested"] == "1999-01-01"


async def test_initialize_negotiates_a_version_we_speak(client):
    for offered, expected in [
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
        ("garbage", "2025-11-25"),
    ]:
        response = await client.post(
            "/mcp",
            headers=ACCEPT,
            json=initialize(offered),
        )
        result = response.json()["result"]
        assert result["protocolVersion"] == expected
        assert result["serverInfo"] == {"name": "test-server", "version": "1.2.3"}
        assert {"tools", "resources", "prompts", "logging", "completions"} <= set(result["capabilities"])


async def test_unknown_method_and_bad_params_in_a_session(client):
    session = await open_session(client)
    headers = {**ACCEPT, "mcp-session-id": session}
    unknown = await client.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "x/y"})
    assert unknown.json()["error"]["code"] == -32601
    bad_level = await client.post(
        "/mcp",
        headers=headers,
        json={"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": "loud"}},
    )
    assert bad_level.json()["error"]["code"] == -32602
    cursor = await client.post(
        "/mcp",
        headers=headers,
        json={"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": "not-a-cursor"}},
    )
    assert cursor.json()["error"]["code"] == -32602


async def test_mcp_param_headers_are_checked_for_annotated_arguments(app, client):
    @app.tool(input_schema={"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}})
    def in_region(region: str) -> str:
        return region

    body = modern_body("tools/call", {"name": "in_region", "arguments": {"region": "eu"}})
    ok = await client.post(
        "/mcp", headers={**modern_headers("tools/call", "in_region"), "mcp-param-region": "eu"}, json=body
    )
    assert ok.json()["result"]["content"][0]["text"] == "eu"
    for extra in ({}, {"mcp-param-region": "us"}):
        bad = await client.post("/mcp", headers={**modern_headers("tools/call", "in_region"), **extra}, json=body)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32020
