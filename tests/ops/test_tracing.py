"""OpenTelemetry spans, read back from the SDK's in-memory exporter: an MCP request's span is named and described
after the semantic conventions and parented to the traceparent the client put in `_meta` (the HTTP header's
context linked), token verification and store operations nest where they happen, and no span holds a secret."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bastion.compose import build
from tests.clients import BASE
from tests.mcp.conftest import MODERN, build_app, modern_body, modern_headers
from tests.oauth.conftest import register, settings, tokens_for

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
HTTP_TRACE = "0af7651916cd43dd8448eb211c80319c"
HTTP_SPAN = "b7ad6b7169203331"


def traced() -> tuple[httpx.AsyncClient, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    configured = settings().model_copy(update={"tracing": settings().tracing.model_copy(update={"enabled": True})})
    surface = build(build_app(), configured, tracer_provider=provider)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=surface), base_url=BASE), exported


def call_body(tool: str, arguments: dict, meta: dict | None = None) -> dict:
    body = modern_body("tools/call", {"name": tool, "arguments": arguments})
    body["params"]["_meta"] = {**body["params"]["_meta"], **(meta or {})}  # a copy: modern_body's is shared
    return body


async def test_a_tool_call_is_a_server_span_parented_to_the_clients_traceparent_and_linked_to_the_http_one():
    client, exported = traced()
    async with client:
        tokens = await tokens_for(client, await register(client))
        exported.clear()
        answer = await client.post(
            "/mcp",
            headers={
                **modern_headers("tools/call", "add"),
                "authorization": f"Bearer {tokens['access_token']}",
                "traceparent": f"00-{HTTP_TRACE}-{HTTP_SPAN}-01",
            },
            json=call_body("add", {"a": 1, "b": 2}, {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}),
        )
    assert answer.status_code == 200
    spans = {span.name: span for span in exported.get_finished_spans()}
    call = spans["tools/call add"]
    assert call.kind == SpanKind.SERVER and call.status.status_code == StatusCode.UNSET
    assert format(call.context.trace_id, "032x") == CLIENT_TRACE
    assert format(call.parent.span_id, "016x") == CLIENT_SPAN and call.parent.is_remote
    [link] = call.links
    assert format(link.context.trace_id, "032x") == HTTP_TRACE and format(link.context.span_id, "016x") == HTTP_SPAN
    assert dict(call.attributes) == {
        "mcp.method.name": "tools/call",
        "mcp.protocol.version": MODERN,
        "network.transport": "tcp",
        "network.protocol.name": "http",
        "jsonrpc.request.id": "1",
        "gen_ai.tool.name": "add",
        "gen_ai.operation.name": "execute_tool",
        "enduser.id": "dev:alice",
        "bastion.client.id": call.attributes["bastion.client.id"],
    }
    # The token was verified (not yet remembered) in a span of the HTTP request's trace, reading the store.
    verify = spans["bastion.token.verify"]
    assert format(verify.context.trace_id, "032x") == HTTP_TRACE
    assert format(verify.parent.span_id, "016x") == HTTP_SPAN
    assert verify.attributes["bastion.token.valid"] is True
    # (The audit trail's writes are spans of their own, in no request's trace: they outlive the request.)
    reads = [s for s in exported.get_finished_spans() if s.name.startswith("bastion.store ") and s.parent]
    assert reads and all(s.parent.span_id == verify.context.span_id for s in reads)
    assert all(s.parent is None for s in exported.get_finished_spans() if s.name == "bastion.store commit")
    assert {s.attributes["db.system.name"] for s in reads} == {"memory"}
    for span in exported.get_finished_spans():
        shown = repr(dict(span.attributes)) + span.name
        assert tokens["access_token"] not in shown and tokens["access_token"].split(".")[1] not in shown


async def test_without_meta_the_http_traceparent_is_the_parent_and_errors_set_the_status():
    client, exported = traced()
    async with client:
        tokens = await tokens_for(client, await register(client))
        auth = {"authorization": f"Bearer {tokens['access_token']}"}
        exported.clear()
        header = {"traceparent": f"00-{HTTP_TRACE}-{HTTP_SPAN}-01"}
        failed = await client.post(
            "/mcp",
            headers={**modern_headers("tools/call", "fail_politely"), **auth, **header},
            json=call_body("fail_politely", {}),
        )
        unknown = await client.post(
            "/mcp",
            headers={**modern_headers("tools/call", "no-such-tool"), **auth},
            json=call_body("no-such-tool", {}, {"traceparent": "00-garbage"}),
        )
    assert failed.json()["result"]["isError"] is True and unknown.status_code == 400
    spans = exported.get_finished_spans()
    [politely] = [s for s in spans if s.name == "tools/call fail_politely"]
    assert format(politely.parent.span_id, "016x") == HTTP_SPAN and not politely.links
    assert politely.status.status_code == StatusCode.ERROR and politely.attributes["error.type"] == "tool_error"
    # A tool the server does not have is not named (names are the client's to invent), and a malformed
    # traceparent is no parent: the span starts a trace of its own.
    [other] = [s for s in spans if s.attributes.get("mcp.method.name") == "tools/call" and s is not politely]
    assert other.name == "tools/call" and other.parent is None
    assert other.attributes["error.type"] == "-32602" and other.attributes["rpc.response.status_code"] == "-32602"


async def test_the_authorization_servers_endpoints_are_server_spans_with_their_store_operations_inside():
    client, exported = traced()
    async with client:
        await register(client)
        await client.get("/no-such-path", headers={"traceparent": f"00-{HTTP_TRACE}-{HTTP_SPAN}-01"})
    spans = exported.get_finished_spans()
    [registered] = [s for s in spans if s.name == "POST /register"]
    assert registered.kind == SpanKind.SERVER and registered.attributes["http.response.status_code"] == 201
    inside = [s for s in spans if s.parent is not None and s.parent.span_id == registered.context.span_id]
    assert any(s.name == "bastion.store commit" for s in inside)
    [missing] = [s for s in spans if s.attributes.get("http.response.status_code") == 404]
    assert missing.name == "GET"  # not a route: the path does not name the span
    assert format(missing.parent.span_id, "016x") == HTTP_SPAN


def test_an_exporter_bastion_does_not_have_is_refused_at_start_up(monkeypatch):
    import pytest

    from bastion.settings import SettingsError
    from tests.clients import local_settings

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,zipkin")
    with pytest.raises(SettingsError) as refused:
        local_settings(tracing={"enabled": True}).check()
    assert str(refused.value) == "OTEL_TRACES_EXPORTER names zipkin: Bastion exports with otlp, console or none"


async def test_a_tools_own_spans_are_children_of_its_call_sync_or_async():
    from opentelemetry import trace

    from bastion import App

    app = App("traced", "1")

    @app.tool
    def in_thread() -> str:
        return format(trace.get_current_span().get_span_context().span_id, "016x")

    @app.tool
    async def on_loop() -> str:
        return format(trace.get_current_span().get_span_context().span_id, "016x")

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    configured = settings().model_copy(update={"tracing": settings().tracing.model_copy(update={"enabled": True})})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build(app, configured, tracer_provider=provider)), base_url=BASE
    ) as client:
        tokens = await tokens_for(client, await register(client))
        seen = {}
        for tool in ("in_thread", "on_loop"):
            answer = await client.post(
                "/mcp",
                headers={**modern_headers("tools/call", tool), "authorization": f"Bearer {tokens['access_token']}"},
                json=call_body(tool, {}),
            )
            seen[tool] = answer.json()["result"]["content"][0]["text"]
    spans = {s.name: s for s in exported.get_finished_spans()}
    for tool, current in seen.items():
        assert current == format(spans[f"tools/call {tool}"].context.span_id, "016x")
