"""The ASGI guard on request heads: App.asgi() under any ASGI server answers 431 before anything runs."""

from __future__ import annotations

import json

import pytest

from bastion import App
from bastion.security.limits import DEFAULT_MAX_HEADER_BYTES, MAX_HEADER_FIELDS, HeaderLimit, head_size
from bastion.settings import Settings, SettingsError
from tests.answers import jsonrpc_error
from tests.clients import asgi_client, local_settings
from tests.mcp.conftest import modern_body, modern_headers


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ran"})


async def call(
    app, headers: list[tuple[bytes, bytes]], path: str = "/x", query: bytes = b""
) -> tuple[int, dict, bytes]:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": query}
    await app({**scope, "headers": headers}, None, send)
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def sized(total: int, path: str = "/x") -> list[tuple[bytes, bytes]]:
    """Headers making a head of exactly `total` bytes."""
    base = [(b"host", b"127.0.0.1:8000"), (b"x-pad", b"")]
    missing = total - head_size("GET", path.encode(), base)[0]
    return [(b"host", b"127.0.0.1:8000"), (b"x-pad", b"a" * missing)]


async def test_a_head_at_the_bound_passes_and_one_byte_more_is_431():
    inner = Recorder()
    gate = HeaderLimit(inner, 4096)
    assert (await call(gate, sized(4096)))[0] == 200
    status, headers, body = await call(gate, sized(4097))
    assert status == 431
    assert headers[b"content-type"] == b"application/json" and headers[b"connection"] == b"close"
    assert int(headers[b"content-length"]) == len(body)
    assert "4096 bytes" in json.loads(body)["error"]["message"]
    assert inner.calls == 1  # only the first ran


async def test_the_request_target_counts():
    inner = Recorder()
    gate = HeaderLimit(inner, 4096)
    assert (await call(gate, [(b"host", b"h")], query=b"q=" + b"a" * 4000))[0] == 200
    assert (await call(gate, [(b"host", b"h")], query=b"q=" + b"a" * 4100))[0] == 431
    assert inner.calls == 1


async def test_too_many_fields_is_431():
    inner = Recorder()
    gate = HeaderLimit(inner)
    fields = [(b"x-f%d" % i, b"1") for i in range(MAX_HEADER_FIELDS)]
    assert (await call(gate, fields))[0] == 200
    assert (await call(gate, [*fields, (b"x-more", b"1")]))[0] == 431
    assert inner.calls == 1


async def test_other_scopes_pass():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])

    await HeaderLimit(inner, 4096)({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]


@pytest.fixture
def ran():
    return []


@pytest.fixture
async def client(ran):
    app = App("limits")

    @app.tool
    def record() -> str:
        """Records that it ran."""
        ran.append(True)
        return "ran"

    async with asgi_client(app) as c:
        yield c


async def test_app_asgi_refuses_an_oversize_head_before_the_tool_runs(client, ran):
    body = modern_body("tools/call", {"name": "record", "arguments": {}})
    headers = modern_headers("tools/call", "record")
    assert (await client.post("/mcp", headers=headers, json=body)).status_code == 200
    assert ran == [True]
    refused = await client.post("/mcp", headers={**headers, "x-big": "a" * DEFAULT_MAX_HEADER_BYTES}, json=body)
    assert jsonrpc_error(refused, 431, -32000)["message"].startswith("Request Header Fields Too Large")
    assert refused.headers["connection"] == "close"
    assert ran == [True]  # did not run again


async def test_app_asgi_refuses_on_every_route(client):
    for path in ("/healthz", "/no-such-route", "/.well-known/oauth-protected-resource"):
        response = await client.get(path, headers={"x-big": "a" * DEFAULT_MAX_HEADER_BYTES})
        assert jsonrpc_error(response, 431, -32000)["message"].startswith("Request Header Fields Too Large"), path


def test_the_bound_is_a_setting():
    assert Settings.load(env={}).max_header_bytes == DEFAULT_MAX_HEADER_BYTES
    assert Settings.load(env={"BASTION_MAX_HEADER_BYTES": "65536"}).max_header_bytes == 65536
    with pytest.raises(SettingsError, match="max_header_bytes"):
        Settings.load(env={"BASTION_MAX_HEADER_BYTES": "100"})


async def test_the_setting_reaches_app_asgi(ran):
    app = App("limits")
    async with asgi_client(app, local_settings(max_header_bytes=65536)) as client:
        assert (await client.get("/healthz", headers={"x-big": "a" * 40_000})).status_code == 200
        refused = await client.get("/healthz", headers={"x-big": "a" * 70_000})
        assert "the limit is 65536 bytes" in jsonrpc_error(refused, 431, -32000)["message"]
