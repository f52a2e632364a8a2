"""Finished spans as an OTLP ExportTraceServiceRequest in protobuf's wire format, written by hand for the few
fields Bastion's spans use, so that http/protobuf (the OTLP default) costs what JSON does, in a third of the bytes.

The messages and field numbers are those of opentelemetry-proto (collector/trace/v1, trace/v1, common/v1,
resource/v1); tests decode the output with its generated classes. What recurs from span to span is encoded once
and reused: names, attribute pairs (methods, tools, subjects, clients), and the attributes an MCP operation's spans
share (SharedAttributes); the fixed fields are packed with their tags in one step each.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from .finished_span import FinishedSpan, SharedAttributes

CONTENT_TYPE = "application/x-protobuf"
MAX_ENCODED = 4096
# (field number, key, type, value) -> the encoded KeyValue field (the type: True and 1 are equal keys otherwise).
_ENCODED: dict[tuple[int, str, type, Any], bytes] = {}
_HASHABLE = frozenset({str, int, float, bool})
_FIXED64 = struct.Struct("<Q")
_FIXED32 = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
# The fixed parts of a Span, each field's tag bytes packed with it (big-endian ids: protobuf bytes, in W3C order).
_IDS = struct.Struct(">HQQHQ")
_PARENT = struct.Struct(">HQ")
_TIMES = struct.Struct("<BBBQBQ")  # the kind is a one-byte varint (1 to 5)
_FLAGS = struct.Struct("<HI")
_LOW64 = (1 << 64) - 1
_NAMES: dict[str, bytes] = {}


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _text(number: int, value: str) -> bytes:
    return _field(number, value.encode("utf-8", "backslashreplace"))


def _any_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")  # bool_value = 2
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int_value = 3 (int64, two's complement)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)  # double_value = 4
    return _text(1, str(value))  # string_value = 1


def _key_value(key: str, value: Any) -> bytes:
    return _text(1, key) + _field(2, _any_value(value))


def attributes(number: int, values: Mapping[str, Any]) -> bytes:
    """Each pair as a repeated KeyValue field `number` (9 in a Span, 1 in a Resource)."""
    parts = []
    for key, value in values.items():
        kind = type(value)
        cached = (number, key, kind, value) if kind in _HASHABLE else None
        encoded = _ENCODED.get(cached) if cached is not None else None
        if encoded is None:
            encoded = _field(number, _key_value(key, value))
            if cached is not None:
                if len(_ENCODED) >= MAX_ENCODED:
                    _ENCODED.clear()
                _ENCODED[cached] = encoded
        parts.append(encoded)
    return b"".join(parts)


def span(finished: FinishedSpan) -> bytes:
    """One Span message."""
    trace_id = finished.trace_id
    parts = [_IDS.pack(0x0A10, trace_id >> 64, trace_id & _LOW64, 0x1208, finished.span_id)]  # trace_id 1, span_id 2
    if finished.parent_id:
        parts.append(_PARENT.pack(0x2208, finished.parent_id))  # parent_span_id = 4
    parts += [
        _name(finished.name),
        _TIMES.pack(0x30, finished.kind, 0x39, finished.start, 0x41, finished.end_time),  # kind 6, start 7, end 8
        attributes(9, finished.attributes),
    ]
    if finished.shared is not None:
        parts.append(_shared(finished.shared))
    for link_trace, link_span in finished.links:  # links = 13: Link {trace_id = 1, span_id = 2}
        link = b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08" + link_span.to_bytes(8, "big")
        parts.append(_field(13, link))
    if finished.status:  # status = 15: Status {message = 2, code = 3}
        message = _text(2, finished.message) if finished.message else b""
        parts.append(_field(15, message + b"\x18" + _varint(finished.status)))
    parts.append(_FLAGS.pack(0x0185, finished.otlp_flags))  # flags = 16 (fixed32)
    return b"".join(parts)


def _name(name: str) -> bytes:
    """The name field (5); names recur (`tools/call add`), so each is encoded once."""
    encoded = _NAMES.get(name)
    if encoded is None:
        encoded = _text(5, name)
        if len(_NAMES) >= MAX_ENCODED:
            _NAMES.clear()
        _NAMES[name] = encoded
    return encoded


def _shared(shared: SharedAttributes) -> bytes:
    encoded: bytes | None = shared.encoded.get("protobuf")
    if encoded is None:
        encoded = shared.encoded["protobuf"] = attributes(9, shared.values)
    return encoded


def request(resource: bytes, spans: Iterable[bytes]) -> bytes:
    """ExportTraceServiceRequest {resource_spans = 1: ResourceSpans {resource = 1, scope_spans = 2: ScopeSpans
    {scope = 1: {name = 1}, spans = 2}}}, given the Resource message's bytes and each Span's."""
    scope = _field(1, _text(1, "bastion"))
    scope_spans = scope + b"".join(_field(2, one) for one in spans)
    return _field(1, _field(1, resource) + _field(2, scope_spans))


def resource(values: Mapping[str, Any]) -> bytes:
    """A Resource message: its attributes (field 1)."""
    return b"".join(_field(1, _key_value(key, value)) for key, value in values.items())
