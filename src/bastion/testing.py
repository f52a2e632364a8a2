"""An MCP client for your own tests: real MCP, over Streamable HTTP, through the whole of Bastion in process.

    from bastion.testing import TestClient

    async def test_add(app):
        async with TestClient(app) as client:                       # 2026-07-28
            assert (await client.call_tool("add", {"a": 1, "b": 2})).structured == {"result": 3}
        async with TestClient(app, protocol="2025-11-25", user="dev:ada", scopes=["notes:read"]) as client:
            assert [tool["name"] for tool in await client.list_tools()] == ["list_notes"]

Requests take the way a network client's would (the origin check, the access log, middleware, per-tool scopes
and [policy], the engine, the tool), minus the sign-in: the client acts as the user it is given (`user` and
`scopes`, or a whole `principal`), as if their token had been checked; with none, as an anonymous caller of a
server without authentication. With `tasks=True` the client declares the tasks extension (a long call of a
task-supporting tool answers with a task; `request("tasks/get", {"taskId": ...})` polls it). What a tool asks
the client (elicitation, sampling, roots) is answered by the callbacks given, mid-call on a 2025 session or as
multi-round-trip answers on 2026-07-28. Notifications (progress, log messages) are kept in `notifications`.

Nothing listens on a port: the ASGI application is called directly, its start-up and shutdown run on entering
and leaving the `async with`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .app import App
from .mcp import versions
from .mcp.headers import NAME_SOURCE, encode_value, header_params
from .principal import SCOPE_KEY, Principal
from .settings import Settings

__all__ = ["CallResult", "ClientError", "TestClient"]

Answer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]
MAX_ROUNDS = 16
MAX_PAGES = 1000
HOST = "127.0.0.1:8000"


class ClientError(Exception):
    """The server answered a JSON-RPC error (or an HTTP error without one)."""

    def __init__(self, code: int, message: str, data: Any = None, status: int = 200) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data
        self.status = status


@dataclass
class CallResult:
    """A tools/call result: its content blocks, structured content, whether it is an error, and all of it."""

    content: list[dict[str, Any]]
    structured: Any
    is_error: bool
    raw: dict[str, Any]

    @property
    def text(self) -> str:
        return "".join(block.get("text", "") for block in self.content if block.get("type") == "text")


@dataclass
class _Reply:
    status: int
    headers: dict[str, str]
    messages: list[dict[str, Any]] = field(default_factory=list)


class TestClient:
    __test__ = False  # not a test class, whatever its name (pytest collects Test* classes)

    def __init__(
        self,
        app: App,
        *,
        protocol: str = versions.LATEST,
        user: str | None = None,
        scopes: Iterable[str] = (),
        principal: Principal | None = None,
        settings: Settings | None = None,
        elicitation: Answer | None = None,
        sampling: Answer | None = None,
        roots: list[dict[str, Any]] | None = None,
        tasks: bool = False,
    ) -> None:
        if protocol not in versions.SUPPORTED:
            raise ValueError(f"protocol {protocol!r}: use one of {', '.join(versions.SUPPORTED)}")
        settings = settings or Settings.model_validate({})
        if settings.authenticated:
            raise ValueError(
                "TestClient acts as the user it is given (user=, scopes= or principal=): pass settings without "
                "authentication"
            )
        if principal is None and user is not None:
            principal = Principal(subject=user, client_id="bastion.testing", scopes=frozenset(scopes))
        self.protocol = protocol
        self.principal = principal
        self.notifications: list[dict[str, Any]] = []
        self._answers: dict[str, Answer] = {}
        capabilities: dict[str, Any] = {}
        if elicitation is not None:
            self._answers["elicitation/create"] = elicitation
            capabilities["elicitation"] = {"form": {}, "url": {}}
        if sampling is not None:
            self._answers["sampling/createMessage"] = sampling
            capabilities["sampling"] = {}
        if roots is not None:
            listed = list(roots)
            self._answers["roots/list"] = lambda _params: {"roots": listed}
            capabilities["roots"] = {}
        if tasks:  # the tasks extension: long calls of task-supporting tools answer with a task to poll
            capabilities["extensions"] = {"io.modelcontextprotocol/tasks": {}}
        self.capabilities = capabilities
        self._app = app.asgi(settings)
        self._session: str | None = None
        self._ids = 0
        self._lifespan: asyncio.Task[None] | None = None
        self._lifespan_inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tool_headers: dict[str, list[tuple[tuple[str, ...], str, str]]] | None = None

    @property
    def modern(self) -> bool:
        return self.protocol not in versions.LEGACY

    # --- lifetime -----------------------------------------------------------------------------------------
    async def __aenter__(self) -> TestClient:
        started: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan_inbox.put_nowait({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.create_task(self._app(scope, self._lifespan_inbox.get, started.put))
        answer = await started.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the server did not start: {answer.get('message', answer)}")
        if not self.modern:
            await self._initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                await self._http("DELETE", {"mcp-session-id": self._session}, None)
        if self._lifespan is not None:
            self._lifespan_inbox.put_nowait({"type": "lifespan.shutdown"})
            await self._lifespan

    async def _initialize(self) -> None:
        _, reply = await self._call_legacy(
            "initialize",
            {
                "protocolVersion": self.protocol,
                "capabilities": self.capabilities,
                "clientInfo": {"name": "bastion.testing", "version": "1"},
            },
            with_session=False,
        )
        self._session = reply.headers.get("mcp-session-id")
        await self._http("POST", self._legacy_headers(), {"jsonrpc": "2.0", "method": "notifications/initialized"})

    # --- what tests call ----------------------------------------------------------------------------------
    async def list_tools(self) -> list[dict[str, Any]]:
        return await self._all("tools/list", "tools")

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> CallResult:
        result = await self.request("tools/call", {"name": name, "arguments": dict(arguments or {})})
        return CallResult(
            content=list(result.get("content") or []),
            structured=result.get("structuredContent"),
            is_error=bool(result.get("isError")),
            raw=result,
        )

    async def list_resources(self) -> list[dict[str, Any]]:
        return await self._all("resources/list", "resources")

    async def read_resource(self, uri: str) -> list[dict[str, Any]]:
        return list((await self.request("resources/read", {"uri": uri})).get("contents") or [])

    async def list_prompts(self) -> list[dict[str, Any]]:
        return await self._all("prompts/list", "prompts")

    async def get_prompt(self, name: str, arguments: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self.request("prompts/get", {"name": name, "arguments": dict(arguments or {})})

    async def request(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any request; its result (input_required rounds answered by the callbacks), or ClientError."""
        params = dict(params or {})
        if not self.modern:
            result, _ = await self._call_legacy(method, params)
            return result
        state: Any = None
        responses: dict[str, Any] = {}
        for _ in range(MAX_ROUNDS):
            sent = dict(params)
            if state is not None:
                sent |= {"requestState": state, "inputResponses": responses}
            result = await self._call_modern(method, sent)
            if result.get("resultType") != "input_required":
                return result
            state = result.get("requestState")
            responses = {
                key: await self._answer(str(asked.get("method")), asked.get("params") or {})
                for key, asked in (result.get("inputRequests") or {}).items()
            }
        raise ClientError(-32603, f"{method} still asked for input after {MAX_ROUNDS} rounds")

    async def _all(self, method: str, key: str) -> list[dict[str, Any]]:
        return await every_page(self.request, method, key)

    async def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        answer = self._answers.get(method)
        if answer is None:
            raise ClientError(-32601, f"the test client was given no answer for {method} (pass one to TestClient)")
        given = answer(params)
        return await given if asyncio.iscoroutine(given) else given  # type: ignore[return-value]

    # --- the two eras ----------------------------------------------------------------------------------------
    async def _call_modern(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id = self._next_id()
        meta = {
            "progressToken": request_id,  # progress notifications are collected in `notifications`
            versions.META_PROTOCOL_VERSION: self.protocol,
            versions.META_CLIENT_INFO: {"name": "bastion.testing", "version": "1"},
            versions.META_CLIENT_CAPABILITIES: self.capabilities,
        }
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}
        headers = {"mcp-protocol-version": self.protocol, "mcp-method": method}
        source = NAME_SOURCE.get(method)
        if source is not None and isinstance(params.get(source), str):
            headers["mcp-name"] = encode_value(params[source])
        if method == "tools/call":
            headers |= await self._param_headers(str(params.get("name")), params.get("arguments") or {})
        reply = await self._http("POST", headers, body)
        return _result(reply, request_id)

    async def _param_headers(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, str]:
        """The Mcp-Param-* headers a tool's schema asks for (x-mcp-header), from its arguments."""
        if self._tool_headers is None:
            self._tool_headers = {}  # set first: the listing below is a request of its own
            for listed in await self.list_tools():
                self._tool_headers[listed["name"]] = header_params(listed.get("inputSchema") or {})
        headers = {}
        for path, header, _ in self._tool_headers.get(tool, []):
            value: Any = arguments
            for part in path:
                value = value.get(part) if isinstance(value, Mapping) else None
            if value is not None:
                text = value if isinstance(value, str) else orjson.dumps(value).decode()
                headers[header] = encode_value(text)
        return headers

    def _legacy_headers(self) -> dict[str, str]:
        headers = {"mcp-protocol-version": self.protocol}
        if self._session is not None:
            headers["mcp-session-id"] = self._session
        return headers

    async def _call_legacy(
        self, method: str, params: dict[str, Any], with_session: bool = True
    ) -> tuple[dict[str, Any], _Reply]:
        request_id = self._next_id()
        if method != "initialize":
            params = {**params, "_meta": {"progressToken": request_id}}
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        headers = self._legacy_headers() if with_session else {}
        reply = await self._http("POST", headers, body, on_request=self._answer_mid_call)
        return _result(reply, request_id), reply

    async def _answer_mid_call(self, message: dict[str, Any]) -> None:
        """A request the server sends mid-call on a 2025 session: answered on a POST of its own."""
        try:
            answer: dict[str, Any] = {"result": await self._answer(str(message["method"]), message.get("params") or {})}
        except ClientError as exc:
            answer = {"error": {"code": exc.code, "message": exc.message}}
        await self._http("POST", self._legacy_headers(), {"jsonrpc": "2.0", "id": message["id"], **answer})

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # --- HTTP, straight into the ASGI application --------------------------------------------------------
    async def _http(
        self,
        method: str,
        headers: Mapping[str, str],
        body: dict[str, Any] | None,
        on_request: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> _Reply:
        raw = orjson.dumps(body) if body is not None else b""
        sent = asyncio.Event()
        finished = asyncio.Event()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def receive() -> dict[str, Any]:
            if not sent.is_set():
                sent.set()
                return {"type": "http.request", "body": raw, "more_body": False}
            await finished.wait()  # the client stays until the whole answer is in
            return {"type": "http.disconnect"}

        all_headers = {
            "host": HOST,
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            **headers,
        }
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": "/mcp",
            "raw_path": b"/mcp",
            "query_string": b"",
            "root_path": "",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in all_headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        if self.principal is not None:
            scope[SCOPE_KEY] = self.principal
        task = asyncio.create_task(self._app(scope, receive, outbox.put))
        try:
            start = await outbox.get()
            reply = _Reply(start["status"], {k.decode(): v.decode() for k, v in start.get("headers", [])})
            events = _Events(reply.headers.get("content-type", ""))
            while True:
                chunk = await outbox.get()
                for message in events.feed(chunk.get("body", b""), final=not chunk.get("more_body")):
                    if "method" in message and "id" in message and on_request is not None:
                        await on_request(message)
                    elif "method" in message:
                        self.notifications.append(message)
                    else:
                        reply.messages.append(message)
                if not chunk.get("more_body"):
                    break
        finally:
            finished.set()
            await task
        return reply


async def every_page(
    request: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]], method: str, key: str
) -> list[dict[str, Any]]:
    """Every item a list method answers (`key` of each result), page after page; a server that pages forever is
    stopped after MAX_PAGES."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        result = await request(method, {"cursor": cursor} if cursor else {})
        items += result.get(key) or []
        cursor = result.get("nextCursor")
        if not cursor:
            break
    return items


class _Events:
    """JSON-RPC messages out of a response body: one JSON document, or Server-Sent Events as they arrive."""

    def __init__(self, content_type: str) -> None:
        self.sse = content_type.startswith("text/event-stream")
        self.buffer = b""

    def feed(self, chunk: bytes, final: bool) -> list[dict[str, Any]]:
        self.buffer += chunk
        if not self.sse:
            if not final or not self.buffer.strip():
                return []
            return [_json(self.buffer)]
        found = []
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            data = b"\n".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))
            if data:
                found.append(_json(data))
        return found


def _json(raw: bytes) -> dict[str, Any]:
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else {"result": value}


def _result(reply: _Reply, request_id: int) -> dict[str, Any]:
    for message in reply.messages:
        if message.get("id") == request_id:
            if "error" in message:
                error = message["error"]
                raise ClientError(
                    int(error.get("code", 0)), str(error.get("message", "")), error.get("data"), reply.status
                )
            result = message.get("result")
            return result if isinstance(result, dict) else {}
    raise ClientError(0, f"HTTP {reply.status} without an answer to request {request_id}", status=reply.status)
