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
_DOUBLE = struct.Struct("<d")
# A Span's fixed fields, each packed with its tag bytes (field order is free in protobuf): the ids big-endian (W3C
# byte order), trace_id 1, span_id 2 and parent_span_id 4; then kind 6 (a one-byte varint, 1 to 5), start 7 and
# end 8 (fixed64) and flags 16 (fixed32), little-endian.
_IDS = struct.Struct(">HQQHQ")
_IDS_PARENT = struct.Struct(">HQQHQHQ")
_FIXED = struct.Struct("<BBBQBQHI")
_LOW64 = (1 << 64) - 1
_NAMES: dict[str, bytes] = {}
_SHORT = [bytes((n,)) for n in range(0x80)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SHORT[value]
    if value < 0x4000:  # the length of most fields and spans: two bytes
        return bytes((value & 0x7F | 0x80, value >> 7))
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
    if finished.parent_id:
        ids = _IDS_PARENT.pack(
            0x0A10, trace_id >> 64, trace_id & _LOW64, 0x1208, finished.span_id, 0x2208, finished.parent_id
        )
    else:
        ids = _IDS.pack(0x0A10, trace_id >> 64, trace_id & _LOW64, 0x1208, finished.span_id)
    fixed = _FIXED.pack(0x30, finished.kind, 0x39, finished.start, 0x41, finished.end_time, 0x0185, finished.flags)
    encoded = ids + fixed + _name(finished.name) + attributes(9, finished.attributes)
    if finished.shared is not None:
        encoded += _shared(finished.shared)
    for link_trace, link_span in finished.links:  # links = 13: Link {trace_id = 1, span_id = 2}
        link = b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08" + link_span.to_bytes(8, "big")
        encoded += _field(13, link)
    if finished.status:  # status = 15: Status {message = 2, code = 3}
        message = _text(2, finished.message) if finished.message else b""
        encoded += _field(15, message + b"\x18" + _varint(finished.status))
    return encoded


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


_SCOPE = _field(1, _text(1, "bastion"))  # ScopeSpans.scope


def request(resource: bytes, spans: Iterable[bytes]) -> bytes:
    """ExportTraceServiceRequest {resource_spans = 1: ResourceSpans {resource = 1, scope_spans = 2: ScopeSpans
    {scope = 1: {name = 1}, spans = 2}}}, given the Resource message's bytes and each Span's."""
    parts = [_SCOPE]
    for one in spans:  # spans = 2
        parts += (b"\x12", _varint(len(one)), one)
    scope_spans = b"".join(parts)
    return _field(1, _field(1, resource) + _field(2, scope_spans))


def resource(values: Mapping[str, Any]) -> bytes:
    """A Resource message: its attributes (field 1)."""
    return b"".join(_field(1, _key_value(key, value)) for key, value in values.items())
