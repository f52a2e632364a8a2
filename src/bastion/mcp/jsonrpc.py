"""JSON-RPC 2.0 framing: parse one message, build responses. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import INVALID_REQUEST, PARSE_ERROR, McpError

RequestId = str | int


@dataclass(slots=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any]


@dataclass(slots=True)
class Notification:
    method: str
    params: dict[str, Any]


@dataclass(slots=True)
class Response:
    """A client's answer to a request the server sent (sampling, elicitation, roots)."""

    id: RequestId
    result: Any = None
    error: dict[str, Any] | None = None


Message = Request | Notification | Response


def is_request_id(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def parse(raw: bytes | str) -> Message:
    """Parse one JSON-RPC message, raising McpError with a parse or invalid-request code."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise McpError(PARSE_ERROR, "Parse error: body is not valid JSON") from None
    return from_obj(data)


def from_obj(data: Any) -> Message:
    if isinstance(data, list):
        raise McpError(INVALID_REQUEST, "Invalid request: JSON-RPC batches are not supported")
    if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
        raise McpError(INVALID_REQUEST, "Invalid request: expected a JSON-RPC 2.0 object")
    msg_id = data.get("id")
    if msg_id is not None and not is_request_id(msg_id):
        raise McpError(INVALID_REQUEST, "Invalid request: id must be a string or an integer")
    method = data.get("method")
    if method is None:
        if msg_id is None or ("result" in data) == ("error" in data):
            raise McpError(INVALID_REQUEST, "Invalid request: missing method")
        error = data.get("error")
        if error is not None and not isinstance(error, dict):
            raise McpError(INVALID_REQUEST, "Invalid response: error must be an object")
        return Response(msg_id, data.get("result"), error)
    if not isinstance(method, str):
        raise McpError(INVALID_REQUEST, "Invalid request: method must be a string")
    params = data.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise McpError(INVALID_REQUEST, "Invalid request: params must be an object")
    if "id" not in data:
        return Notification(method, params)
    if msg_id is None:
        raise McpError(INVALID_REQUEST, "Invalid request: id must not be null")
    return Request(msg_id, method, params)


def result_message(msg_id: RequestId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def error_message(msg_id: RequestId | None, error: McpError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": error.to_error()}


def notification_message(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def request_message(msg_id: RequestId, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def dumps(message: Any) -> bytes:
    return orjson.dumps(message)
