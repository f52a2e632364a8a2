"""2026-07-28 request metadata headers: Mcp-Method, Mcp-Name and Mcp-Param-* must agree with the body.

Intermediaries route and authorise on these headers, so a header that contradicts the body it travels with
is refused (400, HeaderMismatch) rather than ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from .errors import HEADER_MISMATCH, McpError

NAME_SOURCE = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    "tasks/get": "taskId",  # the tasks extension routes on the task too
    "tasks/update": "taskId",
    "tasks/cancel": "taskId",
}
_SENTINEL_START, _SENTINEL_END = "=?base64?", "?="


def mismatch(message: str) -> McpError:
    return McpError(HEADER_MISMATCH, f"Header mismatch: {message}")


def encode_value(value: str) -> str:
    """A value for an Mcp-Name or Mcp-Param-* header: as it is when it can travel so, else the base64 form."""
    plain = value.isascii() and value.isprintable() and value == value.strip()
    if plain and not (value.startswith(_SENTINEL_START) and value.endswith(_SENTINEL_END)):
        return value
    return f"{_SENTINEL_START}{base64.b64encode(value.encode()).decode()}{_SENTINEL_END}"


def decode_value(raw: str) -> str:
    """A header value with the base64 sentinel form decoded; invalid characters are a mismatch."""
    if not (raw.isascii() and raw.replace("\t", " ").isprintable()):
        raise mismatch("header value contains characters not allowed in a header")
    if raw.startswith(_SENTINEL_START) and raw.endswith(_SENTINEL_END) and len(raw) >= 11:
        encoded = raw[len(_SENTINEL_START) : -len(_SENTINEL_END)]
        try:
            return base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise mismatch("header value is not valid base64-encoded UTF-8") from None
    return raw


def check_standard(headers: Mapping[str, str], method: str, params: Mapping[str, Any]) -> None:
    got_method = headers.get("mcp-method")
    if got_method is None:
        raise mismatch("the Mcp-Method header is required")
    if got_method != method:
        raise mismatch(f"Mcp-Method header {got_method!r} does not match the body's method {method!r}")
    source = NAME_SOURCE.get(method)
    if source is None:
        return
    got_name = headers.get("mcp-name")
    if got_name is None:
        raise mismatch(f"the Mcp-Name header is required for {method}")
    if decode_value(got_name) != params.get(source):
        raise mismatch(f"Mcp-Name header does not match the body's {source}")


def header_params(schema: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str, str]]:
    """(property path, lower-case header name, JSON type) for every x-mcp-header annotation in a schema."""
    found: list[tuple[tuple[str, ...], str, str]] = []

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for name, prop in (node.get("properties") or {}).items():
            if not isinstance(prop, Mapping):
                continue
            token = prop.get("x-mcp-header")
            if isinstance(token, str):
                found.append(((*path, name), f"mcp-param-{token.lower()}", str(prop.get("type"))))
            walk(prop, (*path, name))

    walk(schema, ())
    return found


def validate_annotations(schema: Mapping[str, Any]) -> None:
    """Refuse x-mcp-header annotations a conforming client would reject, so the tool is not silently hidden."""
    seen: set[str] = set()
    token_chars = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for path, header, kind in header_params(schema):
        token = header.removeprefix("mcp-param-")
        if not token or not set(token) <= token_chars:
            raise ValueError(f"x-mcp-header on {'.'.join(path)} must be an HTTP token")
        if token in seen:
            raise ValueError(f"x-mcp-header {token!r} is used twice")
        if kind not in ("string", "integer", "boolean"):
            raise ValueError(f"x-mcp-header on {'.'.join(path)} needs a string, integer or boolean property")
        seen.add(token)


def check_params(
    headers: Mapping[str, str], annotations: list[tuple[tuple[str, ...], str, str]], arguments: Any
) -> None:
    for path, header, kind in annotations:
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        got = headers.get(header)
        if value is None:
            if got is not None:
                raise mismatch(f"{header} was sent but the argument it mirrors is absent")
            continue
        if got is None:
            raise mismatch(f"the {header} header is required when that argument is given")
        if not _same(decode_value(got), value, kind):
            raise mismatch(f"{header} header does not match the body's argument")


def _same(text: str, value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if kind == "integer" or isinstance(value, int | float):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return bool(text == value)
