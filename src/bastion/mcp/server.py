"""The transport-independent core: answer one MCP request given its Exchange.

Transports (Streamable HTTP, stdio) parse messages, keep sessions and streams, and call `Server.handle`.
Everything here is the same whichever transport carried the request.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import hashlib
import logging
import secrets as token_source
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson
import pydantic
from pydantic_core import PydanticSerializationError

from ..principal import UpstreamError
from ..security.sealed import seal, unseal
from . import versions
from .connect import ConnectionFailed, ConnectionRequired, Connections, NotConnected, serving
from .context import Context, InputRequired, ToolError, declares
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    RESOURCE_NOT_FOUND_LEGACY,
    UNSUPPORTED_PROTOCOL_VERSION,
    URL_ELICITATION_REQUIRED,
    McpError,
)
from .exchange import Exchange
from .middleware import Middleware, call_of, chain
from .policy import InsufficientScope, Policy, allows
from .registry import Registry, Tool
from .result import ToolResult, error_result, prompt_messages, resource_contents
from .sources import Source
from .tasks import EXTENSION, Tasks, declared, missing_extension

if TYPE_CHECKING:
    from ..ops.telemetry import Telemetry

log = logging.getLogger("bastion.mcp")

# Results of these may be an "input required" interim result (2026-07-28 multi round-trip requests).
MRTR_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
STATE_TTL_SECONDS = 600
MAX_ROUNDS = 16
CONNECT_WAIT_SECONDS = 60  # a 2026-07-28 retry waits this long for the user to finish connecting an account


class Server:
    def __init__(
        self,
        registry: Registry,
        *,
        name: str,
        version: str,
        instructions: str | None = None,
        secrets: Callable[[tuple[str, ...]], dict[str, str]] | None = None,
        tool_timeout: float | None = 300.0,
        mask_error_details: bool = True,
        state_key: bytes | None = None,
        page_size: int = 100,
        policy: Policy | None = None,
        tool_threads: int = 64,
        telemetry: Telemetry | None = None,
        middleware: Sequence[Middleware] = (),
        sources: Sequence[Source] = (),
        connections: Connections | None = None,
    ) -> None:
        self.registry = registry
        self.connections = connections  # users' connected accounts, for tools that need one ([[connections]])
        self.info = {"name": name, "version": version}
        self.instructions = instructions
        self.load_secrets = secrets or (lambda names: {})
        self.tool_timeout = tool_timeout
        self.mask_error_details = mask_error_details
        self.state_key = state_key or token_source.token_bytes(32)
        self.page_size = page_size
        self.policy = policy or Policy()
        self.telemetry = telemetry  # metrics and spans of each request (ops/telemetry.py), when operators want them
        # Plain-function tools get their own threads, so a few hung ones cannot starve the rest.
        self.executor = ThreadPoolExecutor(max_workers=tool_threads, thread_name_prefix="bastion-tool")
        self.sources = tuple(sources)  # tools served by the servers Bastion fronts
        self._tool_defs_for: tuple[tuple[Tool, ...], tuple[int, ...]] = ((), ())
        self._tool_defs: list[tuple[dict[str, Any], frozenset[str]]] = []
        self._remote: dict[str, Source] = {}  # a fronted server's tool name -> the server
        self._handlers: dict[str, Callable[[Exchange, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "ping": self._ping,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._resources_list,
            "resources/templates/list": self._templates_list,
            "resources/read": self._resources_read,
            "prompts/list": self._prompts_list,
            "prompts/get": self._prompts_get,
            "completion/complete": self._complete,
            "tasks/get": self._tasks_get,
            "tasks/update": self._tasks_update,
            "tasks/cancel": self._tasks_cancel,
            "tasks/result": self._tasks_result,
            "tasks/list": self._tasks_list,
        }
        self.tasks = Tasks()  # tool calls become tasks for clients of the tasks extension (2026-07-28)
        # Each request's answer: through the middleware when there is any (the first given the outermost).
        self._answer: Callable[[Exchange, dict[str, Any]], Awaitable[dict[str, Any]]] = self._handle
        if middleware:
            proceed = chain(middleware, lambda call: self._handle(call.exchange, call.params))
            self._answer = lambda ex, params: proceed(call_of(ex, params))

    def close(self) -> None:
        """Stop the tool threads: queued calls are cancelled; a running one finishes on its own (threads cannot be
        killed), without holding up shutdown."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.tasks.close()

    # --- capabilities and identity ----------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        return {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "completions": {},
            "logging": {},
        }

    def initialize_result(self, protocol_version: str) -> dict[str, Any]:
        capabilities = self.capabilities()
        if protocol_version == versions.LATEST_LEGACY:  # its tasks: tools/call may be task-augmented
            capabilities["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
        result: dict[str, Any] = {
            "protocolVersion": protocol_version,
            "capabilities": capabilities,
            "serverInfo": self.info,
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    def discover_result(self) -> dict[str, Any]:
        """The 2026-07-28 `server/discover` result, complete with the fields strict clients require."""
        result: dict[str, Any] = {
            "supportedVersions": list(versions.SUPPORTED),
            "capabilities": {**self.capabilities(), "extensions": {EXTENSION: {}}},
            "serverInfo": self.info,
            "resultType": "complete",
            "ttlMs": 0,
            "cacheScope": "private",
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return self.stamp(result)

    def stamp(self, result: dict[str, Any]) -> dict[str, Any]:
        """Servers identify themselves in every 2026-07-28 result's _meta."""
        meta = result.get("_meta")
        result["_meta"] = (
            {**meta, versions.META_SERVER_INFO: self.info} if meta else {versions.META_SERVER_INFO: self.info}
        )
        return result

    def has_method(self, method: str) -> bool:
        return method in self._handlers

    # --- dispatch ------------------------------------------------------------------------------------
    async def handle(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        """The result of one request, or McpError. Legacy-only and session methods belong to transports."""
        if self.telemetry is None:
            return await self._answer(ex, params)
        method = ex.method if ex.method in self._handlers else "_OTHER"
        name = params.get("name")
        known = isinstance(name, str) and (name in self.registry.tools or self._tool_source(name) is not None)
        tool = str(name) if method == "tools/call" and known else ""
        prompt = name if method == "prompts/get" and isinstance(name, str) and name in self.registry.prompts else ""
        return await self.telemetry.operation(ex, params, method, tool, prompt, self._answer)

    async def _handle(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        handler = self._handlers.get(ex.method)
        if handler is None:
            from .errors import method_not_found

            raise method_not_found(ex.method)
        if not ex.modern:
            return await handler(ex, params)
        if ex.method in MRTR_METHODS and not self._fronted(ex.method, params):
            self._resume(ex, params)
            try:
                result = await handler(ex, params)
            except InputRequired as asked:
                return self.stamp(self._input_required(ex, params, asked))
        else:
            # (A fronted server's questions come back as its own input_required results, state and all.)
            result = await handler(ex, params)
        if "resultType" not in result:  # (input_required, and a task's CreateTaskResult, say what they are)
            result["resultType"] = "complete"
        return self.stamp(result)

    def _fronted(self, method: str, params: dict[str, Any]) -> bool:
        """Whether a request is for a fronted server's tool (which keeps its own request state)."""
        return method == "tools/call" and self._tool_source(params.get("name")) is not None

    def _tool_source(self, name: Any) -> Source | None:
        """The fronted server whose tool `name` is, when it is not one of this server's own."""
        if not self.sources or not isinstance(name, str) or name in self.registry.tools:
            return None
        self._tool_definitions()  # the fronted servers' tools as they are now
        return self._remote.get(name)

    # --- multi round-trip requests (2026-07-28) ------------------------------------------------------
    def _fingerprint(self, ex: Exchange, params: dict[str, Any]) -> str:
        """Binds request state to the same method, the same target and arguments, and the same caller."""
        salient = {k: v for k, v in params.items() if k not in ("_meta", "inputResponses", "requestState")}
        principal = getattr(ex.principal, "subject", None) if ex.principal is not None else None
        blob = orjson.dumps([ex.method, salient, principal], option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()

    def _resume(self, ex: Exchange, params: dict[str, Any]) -> None:
        state_token = params.get("requestState")
        responses = params.get("inputResponses")
        if responses is not None and not isinstance(responses, dict):
            raise McpError(INVALID_PARAMS, "inputResponses must be an object")
        if state_token is None:
            # Answers given up front, without a round before: the client's own to give (it could as well answer
            # when asked). Each reaches the question of its key; any other key is ignored.
            ex.input_responses = {k: v for k, v in (responses or {}).items() if isinstance(k, str)}
            return
        state = unseal(self.state_key, "mrtr", state_token)
        if not isinstance(state, dict) or state.get("f") != self._fingerprint(ex, params):
            raise McpError(INVALID_PARAMS, "requestState is invalid, expired, or belongs to another request")
        answers = dict(state.get("a") or {})
        asked = state.get("k")  # the keys of the questions asked last round (one key in states sealed before)
        for key in asked if isinstance(asked, list) else [asked]:
            if responses and isinstance(key, str) and key in responses:
                answers[key] = responses[key]  # an answer to a question asked; anything else is ignored
        ex.input_responses = answers

    def _input_required(self, ex: Exchange, params: dict[str, Any], asked: InputRequired) -> dict[str, Any]:
        if len(ex.input_responses) >= MAX_ROUNDS:
            raise McpError(INTERNAL_ERROR, f"the request asked the client more than {MAX_ROUNDS} questions")
        state = {"f": self._fingerprint(ex, params), "a": ex.input_responses, "k": list(asked.requests)}
        return {
            "resultType": "input_required",
            "inputRequests": asked.requests,
            "requestState": seal(self.state_key, "mrtr", state, STATE_TTL_SECONDS),
        }

    # --- ping and lists -------------------------------------------------------------------------------
    async def _ping(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def _sources_listed(self, ex: Exchange) -> None:
        for source in self.sources:
            await source.ensure_listed(ex)

    def _page(self, items: list[dict[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
        cursor = params.get("cursor")
        start = 0
        if cursor is not None:
            start = _decode_cursor(cursor, len(items))
        end = start + self.page_size
        result: dict[str, Any] = {key: items[start:end]}
        if end < len(items):
            result["nextCursor"] = base64.urlsafe_b64encode(str(end).encode()).decode()
        return result

    async def _tools_list(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        await self._sources_listed(ex)
        visible = [d for d, needed in self._tool_definitions() if allows(ex.principal, needed)]
        result = self._page(visible, params, "tools")
        return _cacheable(result) if ex.modern else result

    def _tool_definitions(self) -> list[tuple[dict[str, Any], frozenset[str]]]:
        """Every tool's definition and the scopes it needs, in registration order, then the fronted servers'
        tools; never filtered for a caller.

        Rebuilt when a tool is added, removed or replaced (under the same name or not), or a fronted server's tools
        change: the cache is keyed on the registered Tool objects themselves, by identity (a Tool is frozen), and
        on each source's version. Callers' scopes filter each request's copy of this list, so one caller's view is
        never another's. A fronted server's tool named like one already listed is left out (and logged).
        """
        tools = tuple(self.registry.tools.values())
        versions_now = tuple(source.version for source in self.sources)
        if not _same_objects(tools, self._tool_defs_for[0]) or versions_now != self._tool_defs_for[1]:
            # Built before the key is stored: a definition that fails to build leaves no stale pairing behind.
            definitions = [(tool.definition(), self.policy.needed("tool", tool.name, tool.scopes)) for tool in tools]
            remote: dict[str, Source] = {}
            for source in self.sources:
                for definition in source.tools():
                    name = definition["name"]
                    if name in self.registry.tools or name in remote:
                        log.warning("tool %r of %s is left out: another tool has that name", name, source.name)
                        continue
                    remote[name] = source
                    definitions.append((definition, self.policy.needed("tool", name, source.scopes)))
            self._tool_defs, self._remote = definitions, remote
            self._tool_defs_for = (tools, versions_now)
        return self._tool_defs

    async def _resources_list(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        await self._sources_listed(ex)
        items = [
            r.definition()
            for r in self.registry.resources.values()
            if allows(ex.principal, self.policy.needed("resource", r.uri, r.scopes))
        ]
        items += [
            r
            for source in self.sources
            for r in source.resources()
            if r["uri"] not in self.registry.resources
            and allows(ex.principal, self.policy.needed("resource", r["uri"], source.scopes))
        ]
        result = self._page(items, params, "resources")
        return _cacheable(result) if ex.modern else result

    async def _templates_list(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        items = [
            t.definition()
            for t in self.registry.templates.values()
            if allows(ex.principal, self.policy.needed("resource", t.uri_template, t.scopes))
        ]
        items += [
            t
            for source in self.sources
            for t in source.templates()
            if allows(ex.principal, self.policy.needed("resource", t["uriTemplate"], source.scopes))
        ]
        result = self._page(items, params, "resourceTemplates")
        return _cacheable(result) if ex.modern else result

    async def _prompts_list(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        await self._sources_listed(ex)
        items = [
            p.definition()
            for p in self.registry.prompts.values()
            if allows(ex.principal, self.policy.needed("prompt", p.name, p.scopes))
        ]
        items += [
            p
            for source in self.sources
            for p in source.prompts()
            if p["name"] not in self.registry.prompts
            and allows(ex.principal, self.policy.needed("prompt", p["name"], source.scopes))
        ]
        result = self._page(items, params, "prompts")
        return _cacheable(result) if ex.modern else result

    def _check(self, ex: Exchange, kind: str, name: str, own: tuple[str, ...], what: str) -> None:
        if ex.principal is None:
            return  # without authentication there is nobody to check
        needed = self.policy.needed(kind, name, own)
        if not allows(ex.principal, needed):
            raise InsufficientScope(what, needed)

    # --- tools ----------------------------------------------------------------------------------------
    async def _tools_call(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        tool = self.registry.tools.get(name) if isinstance(name, str) else None
        source = self._tool_source(name) if tool is None else None
        if tool is None and source is None:
            raise McpError(INVALID_PARAMS, f"Unknown tool: {name}")
        scopes = tool.scopes if tool is not None else source.scopes if source is not None else ()
        self._check(ex, "tool", str(name), scopes, f"tool {name!r}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        elif not isinstance(arguments, dict):
            raise McpError(INVALID_PARAMS, "arguments must be an object")
        if source is not None:
            return await source.call_tool(str(name), arguments, ex, params)
        assert tool is not None

        def run(called: Exchange) -> Awaitable[dict[str, Any]]:
            return self.call_tool(tool, arguments, called)

        if ex.modern and tool.task_support:
            if declared(ex):
                return await self.tasks.call(ex, run)
            if tool.task_support == "required":
                raise missing_extension()
        elif not ex.modern and "task" in params and ex.protocol_version == versions.LATEST_LEGACY:
            if not tool.task_support:  # 2025-11-25: only tools that say so run as tasks
                raise McpError(METHOD_NOT_FOUND, f"tool {tool.name!r} does not run as a task")
            return self.tasks.start_v1(ex, run)
        elif not ex.modern and tool.task_support == "required":
            raise McpError(METHOD_NOT_FOUND, f"tool {tool.name!r} runs only as a task: call it with a task param")
        return await run(ex)

    # --- the tasks extension (mcp/tasks.py) ------------------------------------------------------------
    async def _tasks_get(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        return self.tasks.get(ex, params) if ex.modern else self.tasks.get_v1(self._v1(ex), params)

    async def _tasks_update(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        return self.tasks.update(self._v2(ex), params)

    async def _tasks_cancel(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        return self.tasks.cancel(ex, params) if ex.modern else self.tasks.cancel_v1(self._v1(ex), params)

    async def _tasks_result(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        return await self.tasks.result_v1(self._v1(ex), params)

    async def _tasks_list(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        return self.tasks.list_v1(self._v1(ex), params)

    @staticmethod
    def _v1(ex: Exchange) -> Exchange:
        """The 2025-11-25 task methods (tasks/result and tasks/list are gone in 2026-07-28's extension)."""
        if ex.protocol_version != versions.LATEST_LEGACY:
            from .errors import method_not_found

            raise method_not_found(ex.method)
        return ex

    @staticmethod
    def _v2(ex: Exchange) -> Exchange:
        if not ex.modern:
            from .errors import method_not_found

            raise method_not_found(ex.method)
        return ex

    async def call_tool(
        self,
        tool: Tool,
        arguments: dict[str, Any],
        ex: Exchange,
        secrets: dict[str, str] | None = None,
        again: bool = True,
    ) -> dict[str, Any]:
        """Run a tool; every failure of the tool itself becomes an isError result, never a crash."""
        signature = tool.signature
        try:
            kwargs = signature.validate(arguments)
        except pydantic.ValidationError as exc:
            return error_result(f"Invalid arguments for tool {tool.name!r}: {_describe(exc)}")
        if tool.requires_upstream is not None:
            stop = await self._upstream_ready(tool, ex)
            if stop is not None:
                return stop
        if secrets is not None:  # given with the call (the worker API): only what the tool declared
            secrets = {k: v for k, v in secrets.items() if k in tool.requires_secrets}
        else:
            secrets = self.load_secrets(tool.requires_secrets) if tool.requires_secrets else {}
        if tool.requires_secrets:
            missing = [s for s in tool.requires_secrets if s not in secrets]
            if missing:
                return error_result(
                    f"Tool {tool.name!r} needs secret(s) not configured on the server: {', '.join(missing)}"
                )
        if signature.context_params:
            ctx = Context(ex, secrets, self.connections if ex.interactive else None)
            for param in signature.context_params:
                kwargs[param] = ctx
        try:
            value = await self._run(tool.fn, kwargs, tool.is_async)
        except (ToolError, UpstreamError) as exc:
            return error_result(str(exc))
        except ConnectionRequired as needed:
            # The tool asked for an account the user has not connected: ask them to, then run it afresh once.
            stop = await self._connect(ex, tool.name, needed.connection, needed.scopes)
            if stop is not None or not again:
                return stop or error_result(f"Tool {tool.name!r} cannot run: {needed.connection} is not connected")
            ex.ask_count = 0
            return await self.call_tool(tool, arguments, ex, secrets, again=False)
        except TimeoutError:
            return error_result(f"Tool {tool.name!r} did not finish within {self.tool_timeout:g} seconds")
        except (InputRequired, asyncio.CancelledError, McpError):
            raise
        except Exception as exc:
            return error_result(self._unexpected(f"tool {tool.name!r}", exc))
        if isinstance(value, ToolResult):
            return value.to_result()
        from .content import to_blocks

        result: dict[str, Any] = {"content": to_blocks(value)}
        if signature.output_adapter is not None:
            try:
                structured = signature.structured(value)
            except (PydanticSerializationError, ValueError, TypeError):
                return error_result(f"Tool {tool.name!r} returned a value that does not match its return type")
            result["structuredContent"] = structured
            if not result["content"]:
                result["content"] = [{"type": "text", "text": orjson.dumps(structured).decode()}]
        return result

    # --- connected accounts ------------------------------------------------------------------------------
    async def _upstream_ready(self, tool: Tool, ex: Exchange) -> dict[str, Any] | None:
        """None when the tool may run: the caller holds a token at its provider (or has connected an account
        there); else the answer that stops it (an error, or the request to connect the account)."""
        provider = str(tool.requires_upstream)
        principal = ex.principal
        connections = serving(self.connections if ex.interactive else None, principal, provider)
        if connections is None:
            refusal = _upstream_refusal(tool, principal)
            return error_result(refusal) if refusal else None
        try:
            await connections.token(principal, provider, tool.upstream_scopes)
        except NotConnected:
            return await self._connect(ex, tool.name, provider, tool.upstream_scopes)
        except ConnectionFailed as exc:
            return error_result(f"Tool {tool.name!r} cannot run: {exc}")
        return None

    async def _connect(
        self, ex: Exchange, tool: str, connection: str, scopes: tuple[str, ...]
    ) -> dict[str, Any] | None:
        """Ask the client to send the user to connect `connection`, as the request's era allows (mcp/connect.py);
        None if, on a 2026-07-28 retry, the user has connected it meanwhile (the tool may run)."""
        assert self.connections is not None
        principal = ex.principal
        if principal is None:
            return error_result(f"Tool {tool!r} needs a signed-in user to connect {connection}")
        key = f"connect:{connection}"
        answer = ex.input_responses.get(key) if ex.modern else None
        if answer is not None:
            action = answer.get("action") if isinstance(answer, dict) else None
            if action != "accept":
                return error_result(f"Tool {tool!r} did not run: connecting {connection} was declined")
            if await self.connections.wait(principal, connection, scopes, CONNECT_WAIT_SECONDS):
                return None
        link = await self.connections.link(principal, connection, scopes, tool, ex.host, ex.root)
        request = {"mode": "url", "message": link.message, "url": link.url}
        if declares(ex.client_capabilities, "elicitation", "url"):
            if ex.modern:
                raise InputRequired({key: {"method": "elicitation/create", "params": request}})
            if ex.protocol_version != "2025-06-18":
                data = {"elicitations": [{**request, "elicitationId": link.elicitation_id}]}
                raise McpError(URL_ELICITATION_REQUIRED, link.message, data)
        # A client that cannot open a link for the user: the user reads it in the tool's answer.
        return error_result(f"{link.message} {link.url}")

    async def _run(self, fn: Callable[..., Any], kwargs: dict[str, Any], is_async: bool) -> Any:
        async with asyncio.timeout(self.tool_timeout):
            if is_async:
                return await fn(**kwargs)
            # Blocking functions run on a worker thread so they never stall the event loop.
            call = functools.partial(contextvars.copy_context().run, fn, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    def _unexpected(self, what: str, exc: Exception) -> str:
        incident = token_source.token_hex(4)
        log.error("%s failed (incident %s)", what, incident, exc_info=exc)
        if self.mask_error_details:
            return f"Error in {what}: an unexpected error occurred (incident {incident}; see the server log)"
        return f"Error in {what}: {type(exc).__name__}: {exc}"

    # --- resources ------------------------------------------------------------------------------------
    async def _resources_read(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise McpError(INVALID_PARAMS, "uri must be a string")
        resource = self.registry.resources.get(uri)
        source = None
        if self.sources and resource is None and self.registry.find_template(uri) is None:
            source = next((s for s in self.sources if s.serves_resource(uri)), None)
        if source is not None:
            self._check(ex, "resource", uri, source.scopes, f"resource {uri!r}")
            result = await source.read_resource(uri, ex)
            return _cacheable(result) if ex.modern else result
        if resource is not None:
            self._check(ex, "resource", uri, resource.scopes, f"resource {uri!r}")
            fn, kwargs, mime, ctx_params = resource.fn, {}, resource.mime_type, resource.context_params
        else:
            found = self.registry.find_template(uri)
            if found is None:
                code = INVALID_PARAMS if ex.modern else RESOURCE_NOT_FOUND_LEGACY
                raise McpError(code, f"Resource not found: {uri}", {"uri": uri})
            template, values = found
            needed = self.policy.needed("resource", template.uri_template, template.scopes) | self.policy.needed(
                "resource", uri
            )
            if not allows(ex.principal, needed):
                raise InsufficientScope(f"resource {uri!r}", needed)
            fn, kwargs, mime, ctx_params = template.fn, dict(values), template.mime_type, template.context_params
        value = await self._call_user(f"resource {uri!r}", fn, kwargs, ctx_params, ex)
        result = {"contents": resource_contents(uri, value, mime)}
        return _cacheable(result) if ex.modern else result

    # --- prompts --------------------------------------------------------------------------------------
    async def _prompts_get(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        prompt = self.registry.prompts.get(name) if isinstance(name, str) else None
        if prompt is None and isinstance(name, str):
            source = self._prompt_source(name)
            if source is not None:
                self._check(ex, "prompt", name, source.scopes, f"prompt {name!r}")
                arguments = params.get("arguments") or {}
                if not isinstance(arguments, dict):
                    raise McpError(INVALID_PARAMS, "prompt arguments must be an object of strings")
                return await source.get_prompt(name, arguments, ex)
        if prompt is None:
            raise McpError(INVALID_PARAMS, f"Unknown prompt: {name}")
        self._check(ex, "prompt", prompt.name, prompt.scopes, f"prompt {prompt.name!r}")
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict) or not all(isinstance(v, str) for v in arguments.values()):
            raise McpError(INVALID_PARAMS, "prompt arguments must be an object of strings")
        known = {a.name for a in prompt.arguments}
        missing = [a.name for a in prompt.arguments if a.required and a.name not in arguments]
        if missing:
            raise McpError(INVALID_PARAMS, f"Missing required argument(s) for prompt {name!r}: {', '.join(missing)}")
        kwargs = {k: v for k, v in arguments.items() if k in known}
        value = await self._call_user(f"prompt {name!r}", prompt.fn, kwargs, prompt.context_params, ex)
        result: dict[str, Any] = {"messages": prompt_messages(value)}
        if prompt.description:
            result["description"] = prompt.description
        return result

    async def _call_user(
        self, what: str, fn: Callable[..., Any], kwargs: dict[str, Any], ctx_params: tuple[str, ...], ex: Exchange
    ) -> Any:
        """Run a resource or prompt function; its failures become JSON-RPC errors with a safe message."""
        for param in ctx_params:
            kwargs[param] = Context(ex)
        try:
            return await self._run(fn, kwargs, asyncio.iscoroutinefunction(fn))
        except ToolError as exc:
            raise McpError(INTERNAL_ERROR, str(exc)) from None
        except TimeoutError:
            raise McpError(INTERNAL_ERROR, f"{what} did not finish in time") from None
        except (InputRequired, asyncio.CancelledError, McpError):
            raise
        except Exception as exc:
            raise McpError(INTERNAL_ERROR, self._unexpected(what, exc)) from None

    # --- completion -------------------------------------------------------------------------------------
    async def _complete(self, ex: Exchange, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("ref")
        argument = params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict) or not isinstance(argument.get("name"), str):
            raise McpError(INVALID_PARAMS, "completion needs ref and argument{name, value}")
        kind = ref.get("type")
        source = self._completion_source(ref)
        if source is not None:
            what, target = ("prompt", ref["name"]) if kind == "ref/prompt" else ("resource", ref["uri"])
            self._check(ex, what, target, source.scopes, f"{what} {target!r}")
            return await source.complete(params, ex)
        if kind == "ref/prompt":
            target = ref.get("name")
            if target not in self.registry.prompts:
                raise McpError(INVALID_PARAMS, f"Unknown prompt: {target}")
            prompt = self.registry.prompts[target]
            self._check(ex, "prompt", prompt.name, prompt.scopes, f"prompt {prompt.name!r}")
        elif kind == "ref/resource":
            target = ref.get("uri")
            key = target if isinstance(target, str) else ""
            entry = self.registry.templates.get(key) or self.registry.resources.get(key)
            if entry is None:
                raise McpError(INVALID_PARAMS, f"Unknown resource template: {target}")
            self._check(ex, "resource", str(target), entry.scopes, f"resource {target!r}")
        else:
            raise McpError(INVALID_PARAMS, f"Unknown completion reference type: {kind}")
        value = argument.get("value", "")
        context = (params.get("context") or {}).get("arguments") or {}
        completer = self.registry.completers.get((kind, str(target), argument["name"]))
        values: list[str] = []
        if completer is not None:
            try:
                produced = completer(str(value), dict(context))
                if asyncio.iscoroutine(produced):
                    produced = await produced
                values = [str(v) for v in produced]  # type: ignore[union-attr]
            except Exception as exc:
                raise McpError(INTERNAL_ERROR, self._unexpected("completion", exc)) from None
        return {"completion": {"values": values[:100], "total": len(values), "hasMore": len(values) > 100}}

    def _prompt_source(self, name: str) -> Source | None:
        """The fronted server a prompt not of this server's own is from, if any."""
        if name in self.registry.prompts:
            return None
        return next((s for s in self.sources if any(p["name"] == name for p in s.prompts())), None)

    def _completion_source(self, ref: dict[str, Any]) -> Source | None:
        name, uri = ref.get("name"), ref.get("uri")
        if ref.get("type") == "ref/prompt" and isinstance(name, str):
            return self._prompt_source(name)
        if ref.get("type") != "ref/resource" or not isinstance(uri, str):
            return None
        if uri in self.registry.templates or uri in self.registry.resources:
            return None
        return next(
            (s for s in self.sources if any(t["uriTemplate"] == uri for t in s.templates()) or s.serves_resource(uri)),
            None,
        )


def check_modern_meta(params: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any] | None, str | None]:
    """Version, capabilities, client info and log level from a 2026-07-28 request's `_meta`."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise McpError(INVALID_PARAMS, f"_meta with {versions.META_PROTOCOL_VERSION} is required")
    version = meta.get(versions.META_PROTOCOL_VERSION)
    if not isinstance(version, str):
        raise McpError(INVALID_PARAMS, f"_meta.{versions.META_PROTOCOL_VERSION} must be a string")
    if version not in versions.MODERN:
        raise unsupported_version(version)
    if versions.META_CLIENT_CAPABILITIES not in meta:
        raise McpError(INVALID_PARAMS, f"_meta.{versions.META_CLIENT_CAPABILITIES} is required")
    caps = meta.get(versions.META_CLIENT_CAPABILITIES)
    info = meta.get(versions.META_CLIENT_INFO)
    level = meta.get(versions.META_LOG_LEVEL)
    if not isinstance(caps, dict) or (info is not None and not isinstance(info, dict)):
        raise McpError(INVALID_PARAMS, "client capabilities and client info must be objects")
    from .context import LOG_LEVELS

    if level is not None and level not in LOG_LEVELS:
        raise McpError(INVALID_PARAMS, f"unknown log level {level!r}")
    return version, caps, info, level


def unsupported_version(requested: Any) -> McpError:
    return McpError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(versions.SUPPORTED), "requested": requested},
    )


def _upstream_refusal(tool: Tool, principal: Any) -> str | None:
    """Why the caller cannot use this tool's upstream provider, or None if it can."""
    provider = str(tool.requires_upstream)
    if principal is None:
        return f"Tool {tool.name!r} needs a sign-in with {provider}, and this server has no authentication"
    try:
        principal.upstream_token(provider, tool.upstream_scopes)
    except UpstreamError as exc:
        return f"Tool {tool.name!r} cannot run: {exc}"
    return None


def _same_objects(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _cacheable(result: dict[str, Any]) -> dict[str, Any]:
    # 2026-07-28 list and read results say how long a client may cache them; lists change at runtime.
    result["ttlMs"] = 0
    result["cacheScope"] = "private"
    return result


def _decode_cursor(cursor: Any, total: int) -> int:
    try:
        start = int(base64.urlsafe_b64decode(str(cursor).encode()).decode())
    except (ValueError, UnicodeDecodeError):
        raise McpError(INVALID_PARAMS, "Invalid cursor") from None
    if not 0 <= start <= total:
        raise McpError(INVALID_PARAMS, "Invalid cursor")
    return start


def _describe(exc: pydantic.ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
