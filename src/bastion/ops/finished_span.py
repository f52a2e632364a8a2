"""A finished span as the encoders (otlp_protobuf.py, otlp_json.py) read it: what Bastion's span pipeline
(ops/otlp.py) keeps until sent, and the attributes many spans share."""

from __future__ import annotations

from typing import Any, Protocol


class SharedAttributes:
    """Attributes that many spans carry alike (an MCP method, tool and protocol version): made once, never changed,
    and encoded once by each encoder, which keeps its encoding in `encoded` under its own name."""

    __slots__ = ("encoded", "values")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.encoded: dict[str, Any] = {}


class FinishedSpan(Protocol):
    """What the encoders read of an ended span (ops/otlp.py's LightSpan): plain values, the OTLP enums mapped."""

    name: str
    trace_id: int
    span_id: int
    flags: int  # OTLP's: the W3C trace flags (bit 0: sampled), and 0x100 | 0x200 when the parent is remote
    parent_id: int  # 0: a root span
    kind: int  # OTLP's SpanKind: 1 internal, 2 server, 3 client
    start: int  # Unix nanoseconds
    end_time: int
    attributes: dict[str, Any]
    links: tuple[tuple[int, int], ...]  # (trace id, span id) each
    status: int  # OTLP's StatusCode: 0 unset, 1 ok, 2 error
    message: str | None
    shared: SharedAttributes | None  # more attributes, none of them a key of `attributes`
