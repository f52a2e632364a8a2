"""Context: what a tool, resource or prompt can do while it handles one request.

A function receives it by declaring a parameter annotated `Context`. Through it the function logs to the
client, reports progress, asks the client for input (sampling, elicitation, roots), and reads who is calling
and the secrets it declared.

Asking the client works in every revision. In 2025-06-18 and 2025-11-25 the question is a request sent to
the client mid-call. In 2026-07-28 (stateless) it is a multi-round-trip request: the call ends with an
"input required" result, the client retries with the answer, and the function runs again from the start,
this time receiving the answer where it asked. Functions that ask questions should therefore do their side
effects after the last question.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from .connect import ConnectionFailed, ConnectionRequired, Connections, NotConnected, serving
from .errors import MISSING_REQUIRED_CLIENT_CAPABILITY, McpError

if TYPE_CHECKING:
    from .exchange import Exchange

LogLevel = Literal["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def wanted_level(level: Any, threshold: str | None) -> bool:
    """Whether a log message at `level` goes to a client that asked for `threshold` and above (None: none)."""
    if threshold is None or level not in LOG_LEVELS:
        return False
    return LOG_LEVELS.index(level) >= LOG_LEVELS.index(threshold)


class ToolError(Exception):
    """Raise from a tool to fail the call with this message shown to the client (isError: true)."""


class InputRequired(BaseException):
    """Raised inside a 2026-07-28 call that needs the client's input; ends the attempt, not the request.

    It derives from BaseException so that a tool's `except Exception` does not swallow it.
    """

    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        super().__init__(*requests)
        self.requests = requests  # key -> {"method", "params"}: every question of this round


@dataclass(slots=True)
class ElicitationResult:
    """The user's answer: action is "accept", "decline" or "cancel"; data is set only on accept."""

    action: Literal["accept", "decline", "cancel"]
    data: Any = None


class Context:
    """The request a function is handling, and the ways to talk back to its client."""

    __slots__ = ("_connections", "_exchange", "_secrets")

    def __init__(
        self, exchange: Exchange, secrets: Mapping[str, str] | None = None, connections: Connections | None = None
    ) -> None:
        self._exchange = exchange
        self._secrets = secrets or {}
        self._connections = connections  # the users' connected accounts ([[connections]]), when configured

    # --- who and what -------------------------------------------------------------------------------
    @property
    def request_id(self) -> str | int:
        return self._exchange.request_id

    @property
    def protocol_version(self) -> str:
        return self._exchange.protocol_version

    @property
    def principal(self) -> Any:
        """The authenticated caller, or None when the server runs without authentication."""
        return self._exchange.principal

    @property
    def client_info(self) -> dict[str, Any] | None:
        return self._exchange.client_info

    @property
    def client_capabilities(self) -> dict[str, Any]:
        return self._exchange.client_capabilities

    @property
    def session_id(self) -> str | None:
        return self._exchange.session_id

    async def upstream_token(self, provider: str, scopes: list[str] | tuple[str, ...] = ()) -> str:
        """The caller's access token at `provider`, renewed first if it expires soon: an account they connected
        ([[connections]]; if they have not, the call ends and the client is asked to send them to connect it),
        or the identity provider they signed in with."""
        principal = self._exchange.principal
        connections = serving(self._connections, principal, provider)
        if connections is not None:
            try:
                return await connections.token(principal, provider, tuple(scopes))
            except NotConnected:
                raise ConnectionRequired(provider, tuple(scopes)) from None
            except ConnectionFailed as exc:
                raise ToolError(str(exc)) from None
        if principal is None or not hasattr(principal, "fresh_upstream_token"):
            raise ToolError(f"this tool needs a sign-in with {provider}, and this server has no authentication")
        token: str = await principal.fresh_upstream_token(provider, scopes)
        return token

    def secret(self, name: str) -> str:
        """A secret this tool declared with requires_secrets; declared-but-unset secrets fail the call."""
        if name not in self._secrets:
            raise ToolError(f"secret {name!r} was not declared by this tool (requires_secrets=[...])")
        return self._secrets[name]

    @property
    def secrets(self) -> Mapping[str, str]:
        return dict(self._secrets)

    # --- telling the client -------------------------------------------------------------------------
    async def log(self, level: LogLevel, data: Any, logger: str | None = None) -> None:
        """Send a log message (notifications/message) if the client asked for this level or above."""
        if not wanted_level(level, self._exchange.log_level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger:
            params["logger"] = logger
        await self._exchange.notify("notifications/message", params)

    async def debug(self, data: Any) -> None:
        await self.log("debug", data)

    async def info(self, data: Any) -> None:
        await self.log("info", data)

    async def warning(self, data: Any) -> None:
        await self.log("warning", data)

    async def error(self, data: Any) -> None:
        await self.log("error", data)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress, if the client gave this request a progress token."""
        token = self._exchange.progress_token
        if token is None:
            return
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self._exchange.notify("notifications/progress", params)

    async def close_stream(self) -> bool:
        """End this call's HTTP response stream now and finish the work in the background of the session.

        The client reconnects (GET with Last-Event-ID) and collects what follows, so a long call survives
        proxies that cut long-lived connections. Only 2025-11-25 sessions can resume; elsewhere this returns
        False and changes nothing.
        """
        return await self._exchange.close_stream()

    # --- asking the client --------------------------------------------------------------------------
    def _require(self, capability: str, detail: str | None = None) -> None:
        if not self.supports(capability, detail):
            what = f"{capability} ({detail} mode)" if detail else capability
            if self._exchange.modern:  # 2026-07-28: the request itself is refused (400), naming what it lacks
                needed: dict[str, Any] = {capability: {detail: {}} if detail else {}}
                raise McpError(
                    MISSING_REQUIRED_CLIENT_CAPABILITY,
                    f"this request needs the client capability {what}, which the client did not declare",
                    {"requiredCapabilities": needed},
                )
            raise ToolError(f"this client does not support {what}, which this tool needs")

    def supports(self, capability: str, mode: str | None = None) -> bool:
        """Whether the client declared `capability` ("elicitation", "sampling", "roots"; for elicitation, `mode`
        "form" or "url"): a tool may choose what to ask by it."""
        return declares(self._exchange.client_capabilities, capability, mode)

    async def gather(self, *questions: Awaitable[Any]) -> list[Any]:
        """Ask several questions at once (`ctx.elicit(...)`, `ctx.sample(...)`, `ctx.list_roots()`): one round of
        input requests on 2026-07-28, side by side mid-call on a 2025 session; their answers, in order."""
        if not self._exchange.modern:
            return list(await asyncio.gather(*questions))
        answers: list[Any] = []
        asked: dict[str, dict[str, Any]] = {}
        for question in questions:
            try:
                answers.append(await question)
            except InputRequired as pending:
                asked |= pending.requests
                answers.append(None)
        if asked:
            raise InputRequired(asked)
        return answers

    async def sample(
        self,
        messages: str | list[dict[str, Any]],
        *,
        max_tokens: int = 1024,
        system_prompt: str | None = None,
        temperature: float | None = None,
        model_preferences: dict[str, Any] | None = None,
        stop_sequences: list[str] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Ask the client's model for a completion; returns the CreateMessageResult (role, content, model).
        `key` names the question among a 2026-07-28 request's input requests."""
        self._require("sampling")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
        params: dict[str, Any] = {"messages": messages, "maxTokens": max_tokens}
        if system_prompt is not None:
            params["systemPrompt"] = system_prompt
        if temperature is not None:
            params["temperature"] = temperature
        if model_preferences is not None:
            params["modelPreferences"] = model_preferences
        if stop_sequences is not None:
            params["stopSequences"] = stop_sequences
        result = await self._exchange.ask("sampling/createMessage", params, key)
        if not isinstance(result, dict) or "content" not in result:
            raise ToolError("the client answered the sampling request with something that is not a message")
        return result

    async def elicit(
        self, message: str, schema: type[BaseModel] | dict[str, Any], key: str | None = None
    ) -> ElicitationResult:
        """Ask the user to fill a form. `schema` is a pydantic model (flat, primitive fields) or a JSON Schema.

        On accept, `data` is an instance of the model (or the validated dict for a JSON Schema).
        """
        self._require("elicitation", "form")
        model = schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None
        requested = elicitation_schema(model) if model else schema
        params: dict[str, Any] = {"message": message, "requestedSchema": requested}
        if self._exchange.protocol_version != "2025-06-18":
            params = {"mode": "form", **params}
        result = await self._exchange.ask("elicitation/create", params, key)
        action, content = _elicit_outcome(result)
        if action != "accept":
            return ElicitationResult(action)
        if model is None:
            return ElicitationResult(action, content or {})
        try:
            return ElicitationResult(action, model.model_validate(content or {}))
        except ValidationError as exc:
            raise ToolError(
                f"the client's answer does not match the requested form: {exc.error_count()} error(s)"
            ) from None

    async def elicit_url(
        self, message: str, url: str, elicitation_id: str | None = None, key: str | None = None
    ) -> ElicitationResult:
        """Send the user to a URL (out-of-band interaction such as a payment or a third-party sign-in)."""
        if not url.startswith(("https://", "http://")):
            raise ToolError("elicitation URLs must be http(s)")
        if self._exchange.protocol_version == "2025-06-18":
            raise ToolError("URL elicitation needs protocol 2025-11-25 or later")
        self._require("elicitation", "url")
        params: dict[str, Any] = {"mode": "url", "message": message, "url": url}
        if not self._exchange.modern:
            import secrets

            params["elicitationId"] = elicitation_id or secrets.token_urlsafe(16)
        result = await self._exchange.ask("elicitation/create", params, key)
        action, _content = _elicit_outcome(result)
        return ElicitationResult(action)

    async def list_roots(self, key: str | None = None) -> list[dict[str, Any]]:
        """The client's roots (directories or files it exposes to this server)."""
        self._require("roots")
        result = await self._exchange.ask("roots/list", {}, key)
        roots = result.get("roots") if isinstance(result, dict) else None
        if not isinstance(roots, list):
            raise ToolError("the client answered roots/list without a list of roots")
        return roots


def declares(capabilities: Mapping[str, Any], capability: str, mode: str | None = None) -> bool:
    """Whether client `capabilities` declare `capability` (and, for elicitation, `mode`: "form" or "url")."""
    caps = capabilities.get(capability)
    return caps is not None and (mode is None or _has_mode(caps, mode))


def _has_mode(caps: Any, mode: str) -> bool:
    # An empty elicitation capability means form mode only (2025-06-18 style).
    if not isinstance(caps, dict):
        return False
    if not caps:
        return mode == "form"
    return mode in caps


def _elicit_outcome(result: Any) -> tuple[Literal["accept", "decline", "cancel"], Any]:
    action = result.get("action") if isinstance(result, dict) else None
    if action not in ("accept", "decline", "cancel"):
        raise McpError(-32602, "the client's elicitation answer has no valid action")
    return action, result.get("content")


def elicitation_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The restricted JSON Schema elicitation allows: a flat object of primitive (or enum) properties."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    properties: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if isinstance(options, list):
            # Optional[X]: a form field that may be left empty is X, not required.
            concrete = [o for o in options if o.get("type") != "null"]
            if len(concrete) == 1:
                prop = {**{k: v for k, v in prop.items() if k != "anyOf" and v is not None}, **concrete[0]}
        ref = prop.get("$ref")
        if isinstance(ref, str) and "enum" in defs.get(ref.rsplit("/", 1)[-1], {}):
            # An Enum field: inline its values, as elicitation schemas have no references.
            target = defs[ref.rsplit("/", 1)[-1]]
            prop = {
                **{k: v for k, v in prop.items() if k != "$ref"},
                "type": target.get("type", "string"),
                "enum": target["enum"],
            }
        prop = {k: v for k, v in prop.items() if k != "title"}
        if (
            "$ref" in prop
            or "anyOf" in prop
            or prop.get("type") == "object"
            or (prop.get("type") == "array" and "items" not in prop)
        ):
            raise TypeError(f"elicitation field {name!r} must be a string, number, boolean or enum")
        properties[name] = prop
    result: dict[str, Any] = {"type": "object", "properties": properties}
    if schema.get("required"):
        result["required"] = schema["required"]
    return result
