"""`bastion serve` with [tracing] on exports its spans to an OTLP/HTTP receiver (a local one, speaking the real
protocol) as the standard variables say: as protobuf by default (decoded here with opentelemetry-proto's own
classes), as JSON with OTEL_EXPORTER_OTLP_PROTOCOL=http/json. Either way the tool call's span arrives named after
the semantic conventions, parented to the client's traceparent, under the configured service name."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import orjson
import pytest

from tests.oauth.conftest import REDIRECT
from tests.waiting import DEADLINE_SECONDS

from .calls import pid_call
from .conftest import bastion_server
from .test_workers import SERVER, grant, sqlite_env

pytestmark = pytest.mark.e2e
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that keeps what it is sent: (path, content type, body)."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        Receiver.received.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.send_header("content-type", self.headers.get("content-type", "application/json"))
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def spans_from(content_type: str, body: bytes) -> list[dict]:
    """Each span as a dict with hex ids and plain attributes, whichever encoding carried it; with its service."""
    if "json" in content_type:
        request = orjson.loads(body)
    else:
        from google.protobuf.json_format import MessageToDict
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        request = MessageToDict(message)
        for resource in request["resourceSpans"]:  # protobuf's JSON form has base64 ids: make them hex
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in span:
                            span[key] = base64.b64decode(span[key]).hex()
    found = []
    for resource in request["resourceSpans"]:
        service = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}["service.name"]["stringValue"]
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                attributes = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                found.append({**span, "attributes": attributes, "service": service})
    return found


def traced_call(token: str) -> dict:
    call = pid_call(token, "otlp-test")
    call["json"]["params"]["_meta"]["traceparent"] = f"00-{TRACE}-{PARENT}-01"
    return call


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
async def test_the_tool_calls_span_reaches_the_collector(tmp_path: Path, protocol: str):
    with receiver() as collector:
        env = sqlite_env(
            tmp_path,
            BASTION_TRACING__ENABLED="true",
            BASTION_JSON_RESPONSE="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_SERVICE_NAME="bastion-e2e",
        )
        with bastion_server(SERVER, env=env) as url:
            base = url.removesuffix("/mcp")
            async with httpx.AsyncClient(timeout=30) as http:
                registered = await http.post(
                    f"{base}/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
                )
                tokens = await grant(base, registered.json()["client_id"])
                answer = await http.post(url, **traced_call(tokens["access_token"]))
                assert answer.status_code == 200
            deadline = time.monotonic() + DEADLINE_SECONDS
            calls: list[dict] = []
            while not calls and time.monotonic() < deadline:
                time.sleep(0.1)  # poll: spans are sent in batches, a second or less apart
                received = [s for path, kind, body in Receiver.received for s in spans_from(kind, body)]
                calls = [s for s in received if s["name"] == "tools/call pid"]
    assert calls, f"no tools/call span among {[s['name'] for s in received]}"
    [span] = calls
    assert all(path == "/v1/traces" for path, _, _ in Receiver.received)
    assert span["traceId"] == TRACE and span["parentSpanId"] == PARENT and span["service"] == "bastion-e2e"
    assert span["kind"] in (2, "SPAN_KIND_SERVER")
    assert span["attributes"]["mcp.method.name"] == "tools/call" and span["attributes"]["gen_ai.tool.name"] == "pid"
    assert span["attributes"]["enduser.id"] == "dev:revoked-user"
    names = {s["name"] for s in received}
    assert {"POST /token", "POST /register"} <= names  # the authorization server's requests are spans too
    assert tokens["access_token"] not in str(received)
