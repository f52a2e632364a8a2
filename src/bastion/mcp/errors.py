"""JSON-RPC and MCP error codes, the exception the engine raises to answer with an error, and the one table
that gives every such error its HTTP status on Streamable HTTP."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# MCP-defined codes.
RESOURCE_NOT_FOUND_LEGACY = -32002  # 2025-06-18 and 2025-11-25; 2026-07-28 uses INVALID_PARAMS
HEADER_MISMATCH = -32020
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022
URL_ELICITATION_REQUIRED = -32042

# Bastion's own (implementation-defined range): the caller lacks scopes; 403 carries the step-up challenge.
FORBIDDEN = -32010
DENIED = -32011  # a middleware refused the request (mcp/middleware.py)
RATE_LIMITED = -32029  # too many requests: 429 with Retry-After, in sessions too
UNAVAILABLE = -32030  # what the request needs cannot answer now (the store): 503 with Retry-After, in sessions too


class Refusal(enum.Enum):
    """The transport's own refusals: the HTTP request never became an MCP request it could answer.

    Their JSON-RPC body always carries INVALID_REQUEST; the refusal, not the code, chooses the status.
    """

    METHOD_NOT_ALLOWED = "method not allowed"
    NOT_ACCEPTABLE = "not acceptable"
    PAYLOAD_TOO_LARGE = "payload too large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported media type"
    SESSION_NOT_FOUND = "session not found"
    STREAM_NOT_FOUND = "stream not found"
    STREAM_CONFLICT = "stream already open"
    TOO_MANY_SESSIONS = "too many sessions"
    SESSIONS_UNAVAILABLE = "shared sessions unavailable"


# The one table from an MCP error to its HTTP status. Every status the endpoint gives an error comes from here.
HTTP_STATUS: Mapping[int | Refusal, int] = MappingProxyType(
    {
        PARSE_ERROR: 400,
        INVALID_REQUEST: 400,
        INVALID_PARAMS: 400,
        METHOD_NOT_FOUND: 404,
        INTERNAL_ERROR: 200,
        RESOURCE_NOT_FOUND_LEGACY: 200,
        HEADER_MISMATCH: 400,
        MISSING_REQUIRED_CLIENT_CAPABILITY: 400,
        UNSUPPORTED_PROTOCOL_VERSION: 400,
        URL_ELICITATION_REQUIRED: 200,
        FORBIDDEN: 403,
        DENIED: 403,
        RATE_LIMITED: 429,
        UNAVAILABLE: 503,
        Refusal.METHOD_NOT_ALLOWED: 405,
        Refusal.NOT_ACCEPTABLE: 406,
        Refusal.PAYLOAD_TOO_LARGE: 413,
        Refusal.UNSUPPORTED_MEDIA_TYPE: 415,
        Refusal.SESSION_NOT_FOUND: 404,
        Refusal.STREAM_NOT_FOUND: 404,
        Refusal.STREAM_CONFLICT: 409,
        Refusal.TOO_MANY_SESSIONS: 503,
        Refusal.SESSIONS_UNAVAILABLE: 503,
    }
)
# A code the table does not name (a tool's own McpError, say) is an ordinary JSON-RPC answer.
ANSWER_STATUS = 200


class McpError(Exception):
    """An error answered to the client as a JSON-RPC error object."""

    headers: tuple[tuple[bytes, bytes], ...] = ()  # HTTP headers its answer carries on Streamable HTTP

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class Refused(McpError):
    """A request the transport refuses before any MCP method sees it (see Refusal)."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(INVALID_REQUEST, message)
        self.refusal = refusal


def http_status(error: McpError, *, in_session: bool = False) -> int:
    """The HTTP status `error` travels with on Streamable HTTP.

    `in_session`: the error answers a request a legacy session (or stateless legacy) accepted. JSON-RPC over a
    session carries such answers with 200, as the 2025 revisions and their clients expect; only FORBIDDEN keeps
    its 403, because the step-up challenge rides on it, and RATE_LIMITED and UNAVAILABLE their 429 and 503, which
    tell any HTTP client to wait.
    """
    key: int | Refusal = error.refusal if isinstance(error, Refused) else error.code
    if in_session and key not in (FORBIDDEN, RATE_LIMITED, UNAVAILABLE):
        return ANSWER_STATUS
    return HTTP_STATUS.get(key, ANSWER_STATUS)


def method_not_found(method: str) -> McpError:
    return McpError(METHOD_NOT_FOUND, f"Method not found: {method}")
