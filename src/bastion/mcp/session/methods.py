"""What a legacy session answers by itself, the same over Streamable HTTP and stdio: the methods and
notifications that only read or change session state."""

from __future__ import annotations

from typing import Any

from ..context import LOG_LEVELS
from ..errors import INVALID_PARAMS, INVALID_REQUEST, McpError
from ..jsonrpc import Notification, Request
from .state import Session

# The methods that change what a session keeps (on many instances, its shared record).
STATE_METHODS = frozenset({"logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
SUBSCRIPTION_METHODS = frozenset({"resources/subscribe", "resources/unsubscribe"})


def legacy_session_method(session: Session, message: Request) -> dict[str, Any] | None:
    """Answer the methods that only touch session state; None for everything else."""
    method, params = message.method, message.params
    if method == "ping":
        return {}
    if method == "logging/setLevel":
        level = params.get("level")
        if level not in LOG_LEVELS:
            raise McpError(INVALID_PARAMS, f"unknown log level {level!r}")
        session.log_level = level
        return {}
    if method in SUBSCRIPTION_METHODS:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise McpError(INVALID_PARAMS, "uri must be a string")
        if method == "resources/subscribe":
            session.subscriptions.add(uri)
        else:
            session.subscriptions.discard(uri)
        return {}
    if method == "initialize":
        raise McpError(INVALID_REQUEST, "the session is already initialized")
    return None


def session_notification(session: Session, message: Notification) -> None:
    if message.method == "notifications/initialized":
        session.initialized = True
    elif message.method == "notifications/cancelled":
        session.cancel(message.params.get("requestId"))
