"""One request in flight: what the transport learned about it, and the ways back to its client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .context import InputRequired
from .jsonrpc import RequestId, is_request_id, notification_message

Send = Callable[[dict[str, Any]], Awaitable[None]]
Ask = Callable[[str, dict[str, Any]], Awaitable[Any]]


def progress_token(params: dict[str, Any]) -> str | int | None:
    """The request's progress token, if it sent a valid one."""
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if is_request_id(token) else None


async def _drop(_message: dict[str, Any]) -> None:
    """Where notifications go when the client cannot receive them (plain JSON responses)."""


async def _cannot_close() -> bool:
    return False


class Exchange:
    __slots__ = (
        "ask_count",
        "client_capabilities",
        "client_info",
        "close_stream",
        "host",
        "input_responses",
        "interactive",
        "log_level",
        "method",
        "modern",
        "principal",
        "progress_token",
        "protocol_version",
        "request_id",
        "root",
        "send",
        "send_request",
        "session_id",
    )

    def __init__(
        self,
        request_id: RequestId,
        method: str,
        protocol_version: str,
        modern: bool,
        *,
        principal: Any = None,
        client_capabilities: dict[str, Any] | None = None,
        client_info: dict[str, Any] | None = None,
        log_level: str | None = None,
        progress_token: str | int | None = None,
        send: Send | None = None,
        send_request: Ask | None = None,
        session_id: str | None = None,
        input_responses: dict[str, Any] | None = None,
        close_stream: Callable[[], Awaitable[bool]] | None = None,
        host: str | None = None,
        root: str = "",
        interactive: bool = True,
    ) -> None:
        self.request_id = request_id
        self.method = method
        self.protocol_version = protocol_version
        self.modern = modern
        self.principal = principal
        self.client_capabilities = client_capabilities or {}
        self.client_info = client_info
        self.log_level = log_level
        self.progress_token = progress_token
        self.send = send or _drop
        self.send_request = send_request
        self.session_id = session_id
        self.input_responses = input_responses or {}
        self.ask_count = 0
        self.close_stream = close_stream or _cannot_close
        self.host = host  # the Host the request came to, and the path the server is mounted at (links to it)
        self.root = root
        self.interactive = interactive  # whether the caller can send a person to a page (False: the worker API)

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        await self.send(notification_message(method, params))

    async def ask(self, method: str, params: dict[str, Any], key: str | None = None) -> Any:
        """Put a question to the client: a request mid-call (legacy) or a multi-round-trip (modern), under `key`
        in the input requests (by default the order in which the function asks: q0, q1, ...)."""
        if not self.modern:
            if self.send_request is None:
                from .context import ToolError

                raise ToolError("this connection cannot carry requests to the client (JSON-only responses)")
            return await self.send_request(method, params)
        # Questions are named in the order the function asks them (or by the key it gives), so a rerun finds its
        # answers.
        if key is None:
            key = f"q{self.ask_count}"
        self.ask_count += 1
        if key in self.input_responses:
            return self.input_responses[key]
        raise InputRequired({key: {"method": method, "params": params}})
