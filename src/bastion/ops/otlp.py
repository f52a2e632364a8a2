"""Bastion's own span pipeline for OTLP/HTTP export: spans that cost a few microseconds to make and to encode,
where the OpenTelemetry SDK's cost about 15 to make and 30 to encode (bench/operations.py, docs/performance.md).
Every request sampled then stays affordable. Encoded as protobuf (otlp_protobuf.py, OTLP's default) or, with
OTEL_EXPORTER_OTLP_PROTOCOL=http/json, as JSON (otlp_json.py).

It speaks the OpenTelemetry API: its spans sit in the API's context, so a tool's own spans (made with any
tracer) are their children, and propagation reads and writes them as usual. What it reads of the standard
variables: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces), ..._HEADERS,
..._TIMEOUT, ..._PROTOCOL, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, and OTEL_TRACES_SAMPLER (always_on,
always_off, traceidratio, parentbased_always_on (the default), parentbased_always_off, parentbased_traceidratio)
with OTEL_TRACES_SAMPLER_ARG. Finished spans wait in a bounded queue as plain values (the oldest dropped beyond
it, and counted); the event loop encodes and posts them once a second or as soon as 512 wait, 512 at most per
request (encoding each span as it ends instead measured no cheaper, and would hold the request). Span events are
not exported.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..http_client import HttpError, Origin
from ..settings.telemetry import SAMPLERS
from . import otlp_json, otlp_protobuf
from .finished_span import FinishedSpan, SharedAttributes
from .sampled import SampledLog

log = SampledLog(logging.getLogger("bastion.tracing"), period=60.0)  # an absent collector: a line a minute

MAX_QUEUE = 65536
BATCH = 512  # spans per post
EVERY_SECONDS = 1.0
ANSWER_BYTES = 65536  # a collector's answer (a partial success names what it refused)
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
ROOT_FLAGS = 0x100 | SAMPLED  # OTLP's span flags: sampled, the parent known to be local (or none)
REMOTE_CHILD_FLAGS = 0x300 | SAMPLED  # sampled, the parent known to be remote
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_LOW64 = (1 << 64) - 1
_random = random.Random()  # ids need to be unique, not secret (as the SDK's)


class Sampler:
    """OTEL_TRACES_SAMPLER's decision for a new span: keep it or not."""

    def __init__(self, name: str, argument: str | None) -> None:
        self.parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        if root not in SAMPLERS:
            raise ValueError(f"OTEL_TRACES_SAMPLER={name!r} is not one Bastion's exporter has")
        ratio = 1.0 if root == "always_on" else 0.0 if root == "always_off" else float(argument or "1.0")
        self.bound = round(max(0.0, min(1.0, ratio)) * (1 << 64))

    def sampled(self, parent: SpanContext | None, trace_id: int) -> bool:
        if self.parent_based and parent is not None and parent.is_valid:
            return parent.trace_flags.sampled
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self.bound


def otlp_kind(kind: SpanKind) -> int:
    """OTLP's number for the API's SpanKind (the API's INTERNAL is 0, OTLP's SPAN_KIND_INTERNAL is 1)."""
    return kind.value + 1


SERVER = otlp_kind(SpanKind.SERVER)


class LightSpan(trace.Span):
    """A span of the API that is also, once ended, the record the encoders read (FinishedSpan): nothing is copied
    when it ends. Its SpanContext is made only if someone asks (a child span, propagation)."""

    __slots__ = (
        "_context",
        "_exporter",
        "_trace_state",
        "attributes",
        "end_time",
        "flags",
        "kind",
        "links",
        "message",
        "name",
        "parent_id",
        "shared",
        "span_id",
        "start",
        "status",
        "trace_id",
    )

    def __init__(
        self,
        name: str,
        trace_id: int,
        span_id: int,
        parent: SpanContext | None,
        kind: int,
        attributes: dict[str, Any],
        links: Sequence[Link],
        exporter: Exporter,
        shared: SharedAttributes | None = None,
    ) -> None:
        self.name, self.trace_id, self.span_id, self.kind = name, trace_id, span_id, kind  # kind: OTLP's (otlp_kind)
        self.attributes, self.shared, self._exporter = attributes, shared, exporter
        if parent is None:
            self.parent_id, self.flags, self._trace_state = 0, ROOT_FLAGS, None
        else:  # OTLP's flags say whether the parent is known to be remote (0x100, and 0x200 if it is)
            self.parent_id, self._trace_state = parent.span_id, parent.trace_state
            self.flags = REMOTE_CHILD_FLAGS if parent.is_remote else ROOT_FLAGS
        self.links = tuple((link.context.trace_id, link.context.span_id) for link in links) if links else ()
        self.status = 0  # OTLP's StatusCode: 0 unset, 1 ok, 2 error
        self.message: str | None = None
        self._context: SpanContext | None = None
        self.end_time = 0  # 0 until it ends
        self.start = time.time_ns()

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(self.trace_id, self.span_id, False, SAMPLED, self._trace_state)
        return self._context

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_attribute(self, key: str, value: Any) -> None:
        if self.end_time:
            return  # ended: it no longer changes (the API's rule)
        shared = self.shared
        if shared is not None and key in shared.values:  # rare: this span's own copy of them all, then
            self.attributes = {**shared.values, **self.attributes}
            self.shared = None
        self.attributes[key] = value

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        """Events are not exported by this pipeline."""

    def update_name(self, name: str) -> None:
        if not self.end_time:
            self.name = name

    def is_recording(self) -> bool:
        return not self.end_time

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        code = status.status_code if isinstance(status, Status) else status
        if isinstance(status, Status):
            description = status.description
        if self.end_time or code is StatusCode.UNSET or self.status == 1:  # OK is final (the API's rule)
            return
        self.status = 1 if code is StatusCode.OK else 2
        self.message = description if self.status == 2 else None

    def record_exception(
        self, exception: BaseException, attributes: Any = None, timestamp: Any = None, escaped: bool = False
    ) -> None:
        self.set_attribute("exception.type", type(exception).__qualname__)

    def end(self, end_time: int | None = None) -> None:
        if not self.end_time:
            self.end_time = end_time or time.time_ns()
            self._exporter.add(self)


class LightTracer(trace.Tracer):
    def __init__(self, exporter: Exporter, sampler: Sampler) -> None:
        self.exporter = exporter
        self.sampler = sampler

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        return self.start_shared(name, context, otlp_kind(kind), None, dict(attributes or {}), links or ())

    def start_shared(
        self,
        name: str,
        context: Context | None,
        kind: int,
        shared: SharedAttributes | None,
        attributes: dict[str, Any],
        links: Sequence[Link],
    ) -> trace.Span:
        """A span of OTLP's `kind` with `shared` attributes besides its own `attributes` (a dict it keeps)."""
        around = trace.get_current_span(context)
        if around is trace.INVALID_SPAN:  # no span around (the usual case for a request): a new trace
            parent = None
        else:
            current = around.get_span_context()
            parent = current if current.is_valid else None
        if parent is None:
            ids = _random.getrandbits(192)  # a new trace's id, and the span's
            trace_id, span_id = ids >> 64 or 1, ids & _LOW64 or 1
        else:
            trace_id, span_id = parent.trace_id, _random.getrandbits(64) or 1
        if not self.sampler.sampled(parent, trace_id):
            trace_state = parent.trace_state if parent is not None else None
            return trace.NonRecordingSpan(SpanContext(trace_id, span_id, False, NOT_SAMPLED, trace_state))
        return LightSpan(name, trace_id, span_id, parent, kind, attributes, links, self.exporter, shared)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links)
        with trace.use_span(span, end_on_exit, record_exception, set_status_on_exception) as current:
            yield current


class LightProvider:
    """What Tracing needs of a tracer provider: a tracer, and a close that sends what is left."""

    def __init__(self, exporter: Exporter, sampler: Sampler) -> None:
        self.exporter = exporter
        self.tracer = LightTracer(exporter, sampler)

    def get_tracer(self, name: str, version: str | None = None) -> LightTracer:
        return self.tracer

    async def aclose(self) -> None:
        await self.exporter.aclose()

    def shutdown(self) -> None:
        """Outside an event loop (a script, a test): send what is left, and close."""
        asyncio.run(self.aclose())


class Exporter:
    """Finished spans, encoded (by `encoding`: otlp_protobuf or otlp_json) and posted from the event loop, once a
    second or as soon as BATCH wait. Nothing here runs on a thread: a thread encoding or posting would hold the
    interpreter lock in turns with the loop, and every socket write of the server (which lets the lock go) would
    wait for its turn again (measured: a thread doing this work cost the server three times its own time)."""

    def __init__(
        self, endpoint: str, headers: dict[str, str], resource: dict[str, str], timeout: float, encoding: Any
    ) -> None:
        self.endpoint = endpoint
        self.encoding = encoding
        self.headers = {**headers, "Content-Type": encoding.CONTENT_TYPE}
        self.resource = encoding.resource(resource)
        self.http = Origin(endpoint, timeout=timeout, max_idle=2)
        self._waiting: deque[Any] = deque()
        self._dropped = 0
        self._full = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    def add(self, span: FinishedSpan) -> None:
        waiting = self._waiting
        waiting.append(span)
        if len(waiting) >= BATCH:
            if len(waiting) > MAX_QUEUE:
                waiting.popleft()
                self._dropped += 1
            self._full.set()
        sender = self._sender
        if sender is None or sender.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a script): aclose sends them
            # A context of its own: the sender outlives the request whose span woke it, and is no part of it.
            self._sender = loop.create_task(self._send(), name="bastion-otlp", context=contextvars.Context())

    async def aclose(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        while self._waiting:
            await self._post()
        await self.http.aclose()

    async def _send(self) -> None:
        while self._waiting:
            if len(self._waiting) < BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), EVERY_SECONDS)
            self._full.clear()
            await self._post()

    async def _post(self) -> None:
        batch = [self._waiting.popleft() for _ in range(min(BATCH, len(self._waiting)))]
        if self._dropped:
            log.warning("%d spans were dropped: the OTLP endpoint did not keep up", self._dropped)
            self._dropped = 0
        body = self.encoding.request(self.resource, map(self.encoding.span, batch))
        try:
            answer = await self.http.request("POST", self.headers, body)
            try:
                await answer.read(ANSWER_BYTES)  # read whole, so that the connection is kept for the next post
            finally:
                answer.close()
        except HttpError as exc:  # the collector is away: these spans are lost, the server is not
            log.warning("could not send %d spans to %s: %s", len(batch), self.endpoint, exc)
            return
        if answer.status >= 300:
            log.warning("could not send %d spans to %s: %s", len(batch), self.endpoint, answer.status)


def light_provider(environ: Mapping[str, str] = os.environ) -> LightProvider:
    """The pipeline the standard variables describe (ValueError naming a variable it cannot use)."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint:
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
        endpoint = base.rstrip("/") + "/v1/traces"
    headers = _pairs(environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS"))
    resource = {"telemetry.sdk.language": "python", "service.name": "bastion"}
    resource.update(_pairs(environ.get("OTEL_RESOURCE_ATTRIBUTES")))
    if environ.get("OTEL_SERVICE_NAME"):
        resource["service.name"] = environ["OTEL_SERVICE_NAME"]
    timeout_ms = environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    encoding = otlp_json if protocol == "http/json" else otlp_protobuf
    sampler = Sampler(
        environ.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on", environ.get("OTEL_TRACES_SAMPLER_ARG")
    )
    exporter = Exporter(endpoint, headers, resource, float(timeout_ms or 10000) / 1000, encoding)
    return LightProvider(exporter, sampler)


def _pairs(text: str | None) -> dict[str, str]:
    """key=value,key=value, each part percent-decoded (the variables' W3C Baggage-like format)."""
    pairs = {}
    for item in (text or "").split(","):
        key, equals, value = item.partition("=")
        if equals and key.strip():
            pairs[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return pairs
