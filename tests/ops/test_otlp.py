"""Bastion's own OTLP/HTTP span pipeline, in process: spans in the OpenTelemetry API's context (a tool's spans
nest in them), the samplers the standard variable names, the protobuf and JSON the OTLP specification defines
(the protobuf read back with opentelemetry-proto's own classes), and a collector that is away costing nothing but
the spans."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from bastion.ops.otlp import Sampler, light_provider


class Collector(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[dict, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        Collector.bodies.append((headers, orjson.loads(body) if "json" in headers["content-type"] else body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector():
    Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_spans_nest_in_the_api_context_and_are_sent_as_otlp_json(collector):
    provider = light_provider(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-tenant=t1",
            "OTEL_SERVICE_NAME": "notes",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
        }
    )
    tracer = provider.get_tracer("bastion")
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1))
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span("tools/call add", parent, SpanKind.SERVER, {"gen_ai.tool.name": "add"}) as call:
        inner = trace.get_tracer("a tool's own").start_span("fetch")  # any tracer: the API's no-op one here
        assert inner.get_span_context().trace_id == remote.trace_id
        with tracer.start_as_current_span("bastion.store get", attributes={"n": 3, "ok": True, "ratio": 0.5}):
            pass
        call.set_status(StatusCode.ERROR, "tool_error")
    provider.shutdown()  # sends what is left
    [(headers, body)] = Collector.bodies
    assert headers["authorization"] == "Bearer abc" and headers["x-tenant"] == "t1"
    assert headers["content-type"] == "application/json"
    [resource] = body["resourceSpans"]
    service = {a["key"]: a["value"]["stringValue"] for a in resource["resource"]["attributes"]}
    assert service["service.name"] == "notes" and service["deployment.environment"] == "test"
    store, outer = resource["scopeSpans"][0]["spans"]  # in the order they ended
    assert outer["name"] == "tools/call add" and outer["kind"] == 2
    assert outer["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736" and outer["parentSpanId"] == "00f067aa0ba902b7"
    assert outer["status"] == {"code": 2, "message": "tool_error"} and outer["flags"] == 0x301
    assert store["parentSpanId"] == outer["spanId"] and store["traceId"] == outer["traceId"] and store["kind"] == 1
    assert store["attributes"] == [
        {"key": "n", "value": {"intValue": "3"}},
        {"key": "ok", "value": {"boolValue": True}},
        {"key": "ratio", "value": {"doubleValue": 0.5}},
    ]
    assert int(store["endTimeUnixNano"]) >= int(store["startTimeUnixNano"]) > 0


@pytest.mark.parametrize(
    ("name", "argument", "parent_sampled", "kept"),
    [
        ("always_on", None, None, True),
        ("always_off", None, None, False),
        ("parentbased_always_on", None, False, False),  # the caller decided not to sample
        ("parentbased_always_off", None, True, True),
        ("traceidratio", "0", None, False),
        ("traceidratio", "1", None, True),
    ],
)
def test_samplers_decide_as_the_specification_says(name, argument, parent_sampled, kept):
    sampler = Sampler(name, argument)
    parent = None
    if parent_sampled is not None:
        parent = SpanContext(1, 2, True, TraceFlags(1 if parent_sampled else 0))
    assert sampler.sampled(parent, 0x1234) is kept


def test_a_ratio_samples_about_that_share_of_traces():
    sampler = Sampler("traceidratio", "0.25")
    kept = sum(sampler.sampled(None, trace_id * 0x9E3779B97F4A7C15 & ((1 << 128) - 1)) for trace_id in range(4000))
    assert 800 < kept < 1200


def test_an_unsampled_span_records_nothing_and_still_propagates(collector):
    provider = light_provider({"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_TRACES_SAMPLER": "always_off"})
    span = provider.get_tracer("bastion").start_span("tools/call add")
    assert not span.is_recording() and span.get_span_context().is_valid
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    provider.shutdown()
    assert Collector.bodies == []


def test_a_collector_that_is_away_loses_the_spans_not_the_server(caplog):
    provider = light_provider(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "500"}
    )
    provider.get_tracer("bastion").start_span("x").end()
    provider.shutdown()
    assert any("could not send 1 spans" in r.getMessage() for r in caplog.records)


def test_a_sampler_bastion_does_not_have_is_refused():
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER='jaeger_remote'"):
        Sampler("jaeger_remote", None)


def test_by_default_the_same_spans_are_sent_as_otlp_protobuf(collector):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    provider = light_provider({"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_SERVICE_NAME": "notes"})
    tracer = provider.get_tracer("bastion")
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1))
    link = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))
    attributes = {"gen_ai.tool.name": "add", "n": -3, "ok": True, "ratio": 0.5}
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    with tracer.start_as_current_span(
        "tools/call add", parent, SpanKind.SERVER, attributes, [trace.Link(link)]
    ) as call:
        call.set_status(StatusCode.ERROR, "tool_error")
    provider.shutdown()
    [(headers, body)] = Collector.bodies
    assert headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    [resource] = request.resource_spans
    assert {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"] == "notes"
    [scope] = resource.scope_spans
    assert scope.scope.name == "bastion"
    [span] = scope.spans
    assert span.name == "tools/call add" and span.kind == 2 and span.flags == 0x301
    assert span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736" and span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert span.end_time_unix_nano >= span.start_time_unix_nano > 0
    values = {a.key: a.value for a in span.attributes}
    assert values["gen_ai.tool.name"].string_value == "add" and values["n"].int_value == -3
    assert values["ok"].bool_value is True and values["ratio"].double_value == 0.5
    assert [(x.trace_id.hex(), x.span_id.hex()) for x in span.links] == [
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    ]
    assert span.status.code == 2 and span.status.message == "tool_error"


def test_an_attribute_true_is_not_confused_with_the_number_1(collector):
    provider = light_provider({"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    tracer = provider.get_tracer("bastion")
    tracer.start_span("a", attributes={"x": True}).end()
    tracer.start_span("b", attributes={"x": 1}).end()
    provider.shutdown()
    spans = Collector.bodies[0][1]["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["attributes"][0]["value"] for s in spans] == [{"boolValue": True}, {"intValue": "1"}]


def _spans(body: bytes | dict) -> list[tuple[str, dict]]:
    """(name, attributes) of each span of a protobuf or JSON export, attributes as plain values."""
    if isinstance(body, dict):
        spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
        return [(s["name"], {a["key"]: next(iter(a["value"].values())) for a in s["attributes"]}) for s in spans]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    spans = request.resource_spans[0].scope_spans[0].spans
    return [(s.name, {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in s.attributes}) for s in spans]


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_an_mcp_requests_span_carries_its_operations_attributes_and_its_own_once_each(collector, protocol):
    from bastion.mcp.exchange import Exchange
    from bastion.ops.tracing import Tracing
    from bastion.principal import Principal

    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    tracing = Tracing(light_provider(environ))
    for request_id, subject in ((1, "alice"), (2, "bob")):  # the operation's attributes are made once, shared
        principal = Principal(subject, "client-1")
        ex = Exchange(request_id, "tools/call", "2026-07-28", True, principal=principal, session_id="s-1")
        span = tracing.operation(ex, {"name": "add"}, "tools/call", "add", "")
        if request_id == 2:  # a tool may overwrite one of them: the span then says it once, with its value
            trace.get_current_span().set_attribute("gen_ai.operation.name", "custom")
        span.finish("tool_error" if request_id == 2 else "")
    tracing.provider.shutdown()
    [(_, body)] = Collector.bodies
    first, second = _spans(body)
    expected = {
        "mcp.method.name": "tools/call",
        "mcp.protocol.version": "2026-07-28",
        "network.transport": "tcp",
        "network.protocol.name": "http",
        "gen_ai.tool.name": "add",
        "gen_ai.operation.name": "execute_tool",
        "jsonrpc.request.id": "1",
        "mcp.session.id": "s-1",
        "enduser.id": "alice",
        "bastion.client.id": "client-1",
    }
    assert first == ("tools/call add", expected)
    second_expected = {
        **expected,
        "jsonrpc.request.id": "2",
        "enduser.id": "bob",
        "gen_ai.operation.name": "custom",
        "error.type": "tool_error",
    }
    assert second == ("tools/call add", second_expected)
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert raw.count(b"gen_ai.operation.name") == 2  # once a span, not a shared copy and an own one


def test_an_ended_span_no_longer_changes_and_ok_is_final(collector):
    provider = light_provider({"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    span = provider.get_tracer("bastion").start_span("a", attributes={"x": 1})
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "too late: OK is final")
    span.set_status(StatusCode.UNSET)
    span.end()
    span.set_attribute("x", 2)
    span.update_name("b")
    span.end()  # a second end sends nothing more
    provider.shutdown()
    [sent] = Collector.bodies[0][1]["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert sent["name"] == "a" and sent["status"] == {"code": 1}
    assert sent["attributes"] == [{"key": "x", "value": {"intValue": "1"}}]
    assert not span.is_recording()


@pytest.mark.parametrize("size", [0, 1, 126, 127, 128, 16383, 16384, 70000])
def test_protobuf_lengths_of_every_size_decode_as_opentelemetry_proto_reads_them(size):
    """Lengths are varints of one, two or three bytes: a name, an attribute and a span of each size read back."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from bastion.ops import otlp_protobuf
    from bastion.ops.finished_span import SharedAttributes
    from bastion.ops.otlp import Exporter, LightSpan

    exporter = Exporter("http://127.0.0.1:9/v1/traces", {}, {}, 1.0, otlp_protobuf)
    remote = SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True, TraceFlags(1))
    text = "é" * (size // 2) + "x" * (size % 2)  # `size` bytes of UTF-8
    shared = SharedAttributes({"shared": text, "n": size})
    spans = [
        LightSpan(text, 7, 8, None, 1, {"own": text}, (), exporter, shared),
        LightSpan("child", remote.trace_id, 9, remote, 2, {}, [trace.Link(remote)], exporter),
    ]
    spans[1].set_status(StatusCode.ERROR, text)
    for span in spans:
        span.end()
    body = otlp_protobuf.request(otlp_protobuf.resource({"service.name": text}), map(otlp_protobuf.span, spans))
    request = ExportTraceServiceRequest.FromString(body)
    [resource] = request.resource_spans
    assert [(a.key, a.value.string_value) for a in resource.resource.attributes] == [("service.name", text)]
    first, second = resource.scope_spans[0].spans
    assert first.name == text and first.trace_id == (7).to_bytes(16, "big") and first.span_id == (8).to_bytes(8, "big")
    assert first.parent_span_id == b"" and first.flags == 0x101 and first.kind == 1
    values = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in first.attributes}
    assert values == {"own": text, "shared": text, "n": size}
    assert second.parent_span_id.hex() == "00f067aa0ba902b7" and second.flags == 0x301 and second.kind == 2
    assert second.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert [(link.trace_id, link.span_id) for link in second.links] == [
        (remote.trace_id.to_bytes(16, "big"), remote.span_id.to_bytes(8, "big"))
    ]
    assert (second.status.code, second.status.message) == (2, text)
    assert second.end_time_unix_nano >= second.start_time_unix_nano > 0
