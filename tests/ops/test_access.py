"""The access log: one line per HTTP request, with who asked for what and how it ended; the request id echoed."""

from __future__ import annotations

import logging

import orjson
import pytest

from bastion.ops.access import AccessLog
from bastion.ops.logs import FIELDS, JsonFormatter, TextFormatter
from tests.clients import asgi_client, local_settings
from tests.mcp.conftest import build_app, modern_body, modern_headers
from tests.oauth.conftest import register, settings, tokens_for


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bastion.access"]


async def test_an_authenticated_tool_call_is_one_line_naming_the_caller_the_tool_and_the_outcome(caplog):
    async with asgi_client(build_app(), settings()) as client:
        registered = await register(client)
        tokens = await tokens_for(client, registered)
        caplog.clear()
        caplog.set_level(logging.INFO, "bastion.access")
        answer = await client.post(
            "/mcp",
            headers={**modern_headers("tools/call", "add"), "authorization": f"Bearer {tokens['access_token']}"},
            json=modern_body("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}),
        )
    assert answer.status_code == 200
    [record] = access_records(caplog)
    fields = getattr(record, FIELDS)
    assert fields["request_id"] == answer.headers["x-request-id"] and len(fields["request_id"]) == 16
    assert {k: v for k, v in fields.items() if k not in ("request_id", "duration_ms")} == {
        "method": "POST",
        "path": "/mcp",
        "status": 200,
        "client_addr": "127.0.0.1",
        "subject": "dev:alice",
        "client_id": registered["client_id"],
        "mcp_method": "tools/call",
        "mcp_target": "add",
    }
    assert isinstance(fields["duration_ms"], float) and fields["duration_ms"] >= 0
    line = TextFormatter().format(record)
    assert 'INFO bastion.access: 127.0.0.1 "POST /mcp" 200 ' in line
    assert line.endswith(f"id={fields['request_id']} sub=dev:alice client={fields['client_id']} mcp=tools/call add")
    as_json = orjson.loads(JsonFormatter().format(record))
    assert as_json["logger"] == "bastion.access" and as_json["level"] == "info" and as_json["status"] == 200
    assert as_json["ts"].endswith("Z") and as_json["mcp_target"] == "add"


async def test_a_refused_call_is_logged_with_its_status_and_no_principal(caplog):
    caplog.set_level(logging.INFO, "bastion.access")
    async with asgi_client(build_app(), settings()) as client:
        answer = await client.post(
            "/mcp",
            headers={**modern_headers("tools/call", "add"), "authorization": "Bearer forged"},
            json=modern_body("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}),
        )
    assert answer.status_code == 401
    [record] = access_records(caplog)
    fields = getattr(record, FIELDS)
    assert fields["status"] == 401 and "subject" not in fields and "mcp_method" not in fields


async def test_the_query_string_is_never_logged_and_a_path_cannot_forge_a_line(caplog):
    caplog.set_level(logging.INFO, "bastion.access")
    async with asgi_client(build_app()) as client:
        await client.get("/callback?code=the-code&state=the-state")
        await client.get("/mcp%0A2026-12-02T00:00:00.000Z INFO bastion.access: forged")
    lines = [TextFormatter().format(r) for r in access_records(caplog)]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert '"GET /callback" 404' in lines[0] and "the-code" not in lines[0] and "the-state" not in lines[0]
    assert '"GET /mcp\\n2026-12-02T00:00:00.000Z INFO bastion.access: forged"' in lines[1]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("haproxy-1a2b.3:4", True), ("x" * 64, True), ("x" * 65, False), ("bad id", False), ("a\u00e9", False)],
)
async def test_a_plain_request_id_from_the_caller_is_kept_and_anything_else_replaced(caplog, sent, kept):
    caplog.set_level(logging.INFO, "bastion.access")
    async with asgi_client(build_app()) as client:
        answer = await client.get("/nowhere", headers={"x-request-id": sent.encode("utf-8")})
    [record] = access_records(caplog)
    echoed = answer.headers["x-request-id"]
    assert getattr(record, FIELDS)["request_id"] == echoed
    assert (echoed == sent) is kept and (kept or len(echoed) == 16)


async def test_health_checks_are_logged_at_debug_only(caplog):
    caplog.set_level(logging.INFO, "bastion.access")
    async with asgi_client(build_app()) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert access_records(caplog) == []
        caplog.set_level(logging.DEBUG, "bastion.access")
        await client.get("/healthz")
    [record] = access_records(caplog)
    assert record.levelno == logging.DEBUG and getattr(record, FIELDS)["path"] == "/healthz"


async def test_an_application_that_fails_is_logged_as_a_500(caplog):
    caplog.set_level(logging.INFO, "bastion.access")

    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    async with asgi_client(AccessLog(broken)) as client:
        with pytest.raises(RuntimeError):
            await client.get("/anything")
    [record] = access_records(caplog)
    assert getattr(record, FIELDS)["status"] == 500


async def test_the_access_log_can_be_turned_off_and_requests_keep_their_ids(caplog):
    caplog.set_level(logging.DEBUG, "bastion.access")
    async with asgi_client(build_app(), local_settings(access_log=False)) as client:
        answer = await client.get("/nowhere", headers={"x-request-id": "from-the-proxy"})
    assert access_records(caplog) == [] and answer.headers["x-request-id"] == "from-the-proxy"


@pytest.mark.parametrize(
    ("method", "path", "subject", "mcp_method", "target"),
    [
        ("POST", "/mcp", "alice", "tools/call", "add"),
        ("GET", "/" + "p" * 300, "alice", None, None),  # a long path: cut
        ("GET", "/mcp\n2026 INFO forged", None, None, None),  # a control character: escaped
        ("X" * 20, "/mcp", None, None, None),  # a long method: cut at its own bound
        ("POST", "/mcp", "bob", "m" * 100, "t"),  # a long MCP method: cut at its own bound
        ("POST", "/mcp", "\u2028carol", "tools/call", "add\x1b[31m"),  # a line separator, an escape sequence
        ("POST", "/mcp", "d" * 150, "tools/call", "add"),  # short parts, a long line
    ],
)
def test_a_line_made_whole_reads_as_the_line_made_part_by_part(method, path, subject, mcp_method, target):
    from bastion.ops.access import AccessLine
    from bastion.principal import Principal

    principal = Principal(subject, "client-1") if subject is not None else None
    line = AccessLine("127.0.0.1", method, path, 200, 1.25, "r1", principal, mcp_method, target)
    assert line.text() == line._cleaned()
    assert line.text().isprintable()
