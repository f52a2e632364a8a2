"""A server Bastion fronts over Streamable HTTP ([[gateway.servers]]): its tools (filtered, renamed or prefixed as
configured), prompts (prefixed) and resources (under their own URIs) as Bastion serves them, kept current, and
calls to them (a Source for the engine).

What it offers is listed when Bastion starts and every REFRESH_SECONDS after (clients are told when they change); a
server that cannot be reached is tried again with growing pauses (at most 30 s), and Bastion serves on without its
tools meanwhile. A call it cannot answer is a tool error naming it; its own JSON-RPC errors reach the caller as
they are. Bastion's callers' tokens never go to it: only the credential configured for it (token_env).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any, Protocol

import orjson

from ..mcp import versions
from ..mcp.context import wanted_level
from ..mcp.errors import INVALID_PARAMS, METHOD_NOT_FOUND, McpError
from ..mcp.exchange import Exchange
from ..mcp.middleware import Unavailable
from ..mcp.notify import LIST_CHANGED, Broadcaster, Change
from ..mcp.result import error_result
from ..ops.sampled import SampledLog
from ..security.sealed import seal, unseal
from ..settings.gateway import GatewayServer
from .client import BackendUnavailable, McpClient, OnMessage, upstream_token
from .held import Held, HeldCalls, Question
from .watch import Watch

log = logging.getLogger("bastion")
REFRESH_SECONDS = 60.0
MAX_PAUSE_SECONDS = 30.0
MAX_PAGES = 100
MAX_CALLERS = 1000  # callers' clients kept at once by a server reached with their own tokens
RETRY_LISTING_SECONDS = 5.0
MAX_ROUNDS = 8  # questions a 2026-07-28 server may put in turn within one call
STATE_PURPOSE = "gateway-state"
STATE_TTL_SECONDS = 600
RESULT_KEYS = ("content", "structuredContent", "isError")  # what of its answer a client is given
ASKS = {"elicitation/create": "elicitation", "sampling/createMessage": "sampling", "roots/list": "roots"}
LIST_CHANGES = frozenset(LIST_CHANGED.values())
HELD_QUESTION = "question"  # the key of a held call's question in input_required (one at a time)


class Client(Protocol):
    """A connection to the server: over HTTP (client.py) or to one of its processes (stdio.py)."""

    capabilities: dict[str, Any]

    @property
    def modern(self) -> bool: ...

    async def request(
        self, method: str, params: dict[str, Any], on_message: OnMessage | None = None
    ) -> dict[str, Any]: ...

    async def respond(self, message_id: Any, answer: dict[str, Any] | McpError) -> None: ...


class Connections(Protocol):
    """Which Client a call goes through, and which one lists what the server offers."""

    refresh_every: float | None  # seconds between listings; None: only when it says its tools changed
    watched: McpClient | None  # whose notifications outside calls hold for every caller (watch.py), if any

    async def for_call(self, ex: Exchange) -> Client: ...

    async def for_listing(self) -> Client: ...

    async def done_listing(self, client: Client) -> None: ...

    async def close(self) -> None: ...


class Shared:
    """One HTTP client for every caller: the server is given Bastion's own credential, never a caller's."""

    refresh_every: float | None = REFRESH_SECONDS

    def __init__(self, client: McpClient) -> None:
        self.client = client
        self.watched: McpClient | None = client  # the same view for everyone: its word outside calls is everyone's

    async def for_call(self, ex: Exchange) -> Client:
        return self.client

    async def for_listing(self) -> Client:
        return self.client

    async def done_listing(self, client: Client) -> None:
        pass

    async def close(self) -> None:
        await self.client.close()


class WaitingForCaller(BackendUnavailable):
    """Only a caller's own credential opens the server: what it offers is listed on a caller's first listing."""


class PerCaller:
    """HTTP with each caller's own token at an upstream provider: a client (and its session with the server) per
    caller and application, the MAX_CALLERS most recent kept. The token is asked for at every request (renewed
    when it expires); the server never sees Bastion's token, nor one caller's token on another's request."""

    refresh_every: float | None = REFRESH_SECONDS
    watched: McpClient | None = None  # each caller's own view: it tells a caller during that caller's calls

    def __init__(self, make: Callable[[Callable[[], Any]], McpClient], provider: str) -> None:
        self.make = make  # a client whose credential asks the given function for the current principal
        self.provider = provider
        self._callers: dict[tuple[str, str], _Caller] = {}
        self._latest: _Caller | None = None

    async def for_call(self, ex: Exchange) -> Client:
        principal = ex.principal
        if principal is None:
            raise BackendUnavailable(f"it needs the caller's {self.provider} account, and this server has no sign-in")
        key = (principal.subject, principal.client_id)
        caller = self._callers.pop(key, None)
        if caller is None:
            caller = _Caller(principal)
            caller.client = self.make(lambda: caller.principal)
        caller.principal = principal  # the newest: its grant is the one that renews the token
        self._callers[key] = caller
        while len(self._callers) > MAX_CALLERS:
            oldest = next(iter(self._callers))
            await self._callers.pop(oldest).client.close()
        self._latest = caller
        return caller.client

    async def for_listing(self) -> Client:
        if self._latest is None:
            raise WaitingForCaller("its tools are listed with a caller's own token, on the first listing")
        return self._latest.client

    async def done_listing(self, client: Client) -> None:
        pass

    async def close(self) -> None:
        callers, self._callers = list(self._callers.values()), {}
        for caller in callers:
            await caller.client.close()


class _Caller:
    def __init__(self, principal: Any) -> None:
        self.principal = principal
        self.client: McpClient


async def bearer_of(principal: Any, provider: str) -> dict[str, str]:
    """The Authorization header with the caller's current token at `provider` (renewed first if expired)."""
    return {"authorization": f"Bearer {await upstream_token(principal, provider)}"}


class RemoteServer:
    def __init__(
        self,
        config: GatewayServer,
        connections: Connections,
        state_key: bytes,
        broadcaster: Broadcaster | None = None,
    ) -> None:
        self.config = config
        self.connections = connections
        self.state_key = state_key  # seals the servers' request state handed to 2026-07-28 callers
        self.broadcaster = broadcaster  # Bastion's listeners: told of changes, asked which resources they want
        self.name = config.name
        self.scopes = tuple(config.scopes)
        self.version = 0
        self._definitions: list[dict[str, Any]] = []
        self._their_names: dict[str, str] = {}  # the name Bastion serves -> the server's own
        self._prompts: list[dict[str, Any]] = []
        self._their_prompts: dict[str, str] = {}
        self._resources: list[dict[str, Any]] = []
        self._uris: frozenset[str] = frozenset()
        self._templates: list[dict[str, Any]] = []
        self._patterns: list[re.Pattern[str]] = []
        self._keeping: asyncio.Task[None] | None = None
        self.watch: Watch | None = None  # its notifications outside calls, when they hold for every caller
        self._watching: asyncio.Task[None] | None = None
        self._interest = asyncio.Event()  # set when Bastion's listeners' subscriptions may have changed
        self.held = HeldCalls()  # calls held for 2026-07-28 callers' answers to a 2025 server's questions
        self._sampled = SampledLog(log, period=60.0)
        self._listed = False  # whether a listing ever succeeded
        self._tried_at = -RETRY_LISTING_SECONDS
        self._listing = asyncio.Lock()

    def tools(self) -> Sequence[dict[str, Any]]:
        return self._definitions

    def prompts(self) -> Sequence[dict[str, Any]]:
        return self._prompts

    def resources(self) -> Sequence[dict[str, Any]]:
        return self._resources

    def templates(self) -> Sequence[dict[str, Any]]:
        return self._templates

    def serves_resource(self, uri: str) -> bool:
        return uri in self._uris or any(pattern.match(uri) for pattern in self._patterns)

    async def start(self) -> None:
        self._keeping = asyncio.create_task(self._keep_current(), name=f"bastion-gateway-{self.name}")
        client = self.connections.watched
        if client is not None and self.broadcaster is not None:
            self.broadcaster.watch_interest(self._interest)
            self.watch = Watch(self.name, client, self._heard, self._wanted, self._interest)
            self._watching = asyncio.create_task(self.watch.run(), name=f"bastion-gateway-{self.name}-watch")

    async def stop(self) -> None:
        self.held.close()
        for task in (self._keeping, self._watching):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.connections.close()

    async def refresh(self) -> None:
        """List what it offers again; tell clients if the tools Bastion serves of it changed."""
        client = await self.connections.for_listing()
        try:
            await self._list(client)
        finally:
            await self.connections.done_listing(client)

    async def ensure_listed(self, ex: Exchange) -> None:
        """Before a caller's listing: if nothing was ever listed (the server opens only to a caller's own token, or
        was unreachable), list through this caller's connection (at most every few seconds)."""
        if self._listed or time.monotonic() - self._tried_at < RETRY_LISTING_SECONDS:
            return
        async with self._listing:
            if self._listed:
                return
            self._tried_at = time.monotonic()
            try:
                await self._list(await self.connections.for_call(ex))
            except (BackendUnavailable, McpError) as exc:
                self._sampled.warning("gateway server %s: %s", self.name, exc)

    async def _list(self, client: Client) -> None:
        definitions, names = self._served(await _all(client, "tools/list", "tools"))
        offers = client.capabilities
        changed = []
        if "prompts" in offers:
            prompts, their_prompts = self._served_prompts(await _all(client, "prompts/list", "prompts"))
            if prompts != self._prompts:
                self._prompts, self._their_prompts = prompts, their_prompts
                changed.append("prompts")
        if "resources" in offers:
            resources = [r for r in await _all(client, "resources/list", "resources") if _has_str(r, "uri")]
            listed = await _all(client, "resources/templates/list", "resourceTemplates")
            templates = [t for t in listed if _has_str(t, "uriTemplate")]
            if (resources, templates) != (self._resources, self._templates):
                self._resources, self._uris = resources, frozenset(r["uri"] for r in resources)
                self._templates, self._patterns = templates, [_pattern(t["uriTemplate"]) for t in templates]
                changed.append("resources")
                self._interest.set()  # what it serves changed: so may which of its resources are wanted
        self._listed = True
        if definitions != self._definitions:
            self._definitions, self._their_names = definitions, names
            self.version += 1
            changed.append("tools")
        if self.broadcaster is not None:
            for kind in changed:
                await self.broadcaster.list_changed(kind)

    async def get_prompt(self, name: str, arguments: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        theirs = self._their_prompts.get(name)
        if theirs is None:
            raise McpError(INVALID_PARAMS, f"Unknown prompt: {name}")
        result = await self._asked("prompts/get", {"name": theirs, "arguments": arguments}, ex)
        return {key: result[key] for key in ("description", "messages") if key in result}

    async def read_resource(self, uri: str, ex: Exchange) -> dict[str, Any]:
        result = await self._asked("resources/read", {"uri": uri}, ex)
        contents = result.get("contents")
        return {"contents": contents if isinstance(contents, list) else []}

    async def complete(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        ref = dict(params["ref"])
        if ref.get("type") == "ref/prompt":
            ref["name"] = self._their_prompts.get(ref["name"], ref["name"])
        asked = {key: value for key, value in params.items() if key in ("argument", "context")} | {"ref": ref}
        result = await self._asked("completion/complete", asked, ex)
        completion = result.get("completion")
        return {"completion": completion if isinstance(completion, dict) else {"values": []}}

    async def _asked(self, method: str, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        try:
            client = await self.connections.for_call(ex)
            return await client.request(method, params, _Relay(ex, self, client).message)
        except BackendUnavailable as exc:
            self._sampled.warning("gateway server %s: %s", self.name, exc)
            raise Unavailable(f"The server {self.name!r} behind this gateway is unavailable: {exc}") from None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], ex: Exchange, params: dict[str, Any]
    ) -> dict[str, Any]:
        theirs = self._their_names.get(name)
        if theirs is None:
            raise McpError(INVALID_PARAMS, f"Unknown tool: {name}")
        asked: dict[str, Any] = {"name": theirs, "arguments": arguments}
        if ex.modern and params.get("requestState") is not None:  # the caller's answers to the server's questions
            state = self._state(ex, name, arguments, params)
            if "h" in state:  # a 2025 server's call, held for them
                return await self._resume_held(ex, name, arguments, state["h"], params)
            asked |= _resumed(state, params)
        meta: dict[str, Any] = {}
        if ex.progress_token is not None:
            meta["progressToken"] = ex.progress_token
        try:
            client = await self.connections.for_call(ex)
            if client.modern and ex.log_level is not None:
                meta[versions.META_LOG_LEVEL] = ex.log_level
            if client.modern:  # what the caller can answer, so that the server asks only that
                meta[versions.META_CLIENT_CAPABILITIES] = ex.client_capabilities
            if meta:
                asked["_meta"] = meta
            relay = _Relay(ex, self, client)
            if ex.modern and not client.modern:  # its questions come mid-call: the call is held for the answers
                relay.questions = asyncio.Queue()
                call = asyncio.create_task(client.request("tools/call", asked, relay.message))
                return await self._held_until(ex, name, arguments, call, relay, 0)
            result = await client.request("tools/call", asked, relay.message)
            for _ in range(MAX_ROUNDS):  # a 2026-07-28 server's questions (input_required)
                if result.get("resultType") != "input_required":
                    break
                if ex.modern:  # passed on as Bastion's own input_required: the caller answers and sends it again
                    return self._questions(ex, name, arguments, result)
                answers = await relay.answers(result.get("inputRequests"))  # asked mid-call, on the session
                if answers is None:
                    return error_result(f"The server {self.name!r} asked for input this client cannot give")
                again = {**asked, "inputResponses": answers, "requestState": result.get("requestState")}
                result = await client.request("tools/call", again, relay.message)
        except BackendUnavailable as exc:
            return self._unavailable(exc)
        return self._answer(result)

    def _answer(self, result: dict[str, Any]) -> dict[str, Any]:
        """What of the server's result the caller is given."""
        if result.get("resultType") == "input_required":
            return error_result(f"The server {self.name!r} asked for input more than {MAX_ROUNDS} times")
        answer = {key: result[key] for key in RESULT_KEYS if key in result}
        if not isinstance(answer.get("content"), list):
            answer["content"] = []
        return answer

    def _unavailable(self, exc: BackendUnavailable) -> dict[str, Any]:
        self._sampled.warning("gateway server %s: %s", self.name, exc)
        return error_result(f"The server {self.name!r} behind this gateway is unavailable: {exc}")

    async def _held_until(
        self,
        ex: Exchange,
        name: str,
        arguments: dict[str, Any],
        call: asyncio.Task[dict[str, Any]],
        relay: _Relay,
        rounds: int,
    ) -> dict[str, Any]:
        """Wait for the call's result, or its next question: then hold the call and hand the caller the question
        as input_required (its request state naming the held call)."""
        assert relay.questions is not None
        asking = asyncio.create_task(relay.questions.get())
        try:
            await asyncio.wait({call, asking}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the caller left: so does the call at the server
            call.cancel()
            raise
        finally:
            if not asking.done():
                asking.cancel()
        if call.done():
            try:
                return self._answer(call.result())
            except BackendUnavailable as exc:
                return self._unavailable(exc)
        question = asking.result()
        if rounds >= MAX_ROUNDS:
            call.cancel()
            return error_result(f"The server {self.name!r} asked for input more than {MAX_ROUNDS} times")
        key = self.held.hold(Held(call, question, relay, rounds + 1))
        state = {"h": key, "f": _fingerprint(ex, name, arguments)}
        return {
            "resultType": "input_required",
            "inputRequests": {HELD_QUESTION: {"method": question.method, "params": question.params}},
            "requestState": seal(self.state_key, STATE_PURPOSE, state, STATE_TTL_SECONDS),
        }

    async def _resume_held(
        self, ex: Exchange, name: str, arguments: dict[str, Any], key: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        held = self.held.take(key) if isinstance(key, str) else None
        if held is None:
            raise McpError(
                INVALID_PARAMS,
                "requestState is no longer held (it expired, or the call went to another instance): call the tool "
                "again",
            )
        responses = params.get("inputResponses")
        answer = responses.get(HELD_QUESTION) if isinstance(responses, dict) else None
        held.relay.ex = ex  # what the server sends from now on goes to this request
        held.question.answer.set_result(
            answer if isinstance(answer, dict) else McpError(INVALID_PARAMS, "the client gave no answer")
        )
        return await self._held_until(ex, name, arguments, held.call, held.relay, held.rounds)

    def _questions(self, ex: Exchange, name: str, arguments: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """The server's input_required, as Bastion's: its questions as they are, its request state sealed with
        the caller, tool and arguments it belongs to (so that no one else can send it back through Bastion)."""
        requests = result.get("inputRequests")
        if not isinstance(requests, dict) or not requests:
            return error_result(f"The server {self.name!r} asked for input without saying what")
        state = {"s": result.get("requestState"), "f": _fingerprint(ex, name, arguments)}
        return {
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": seal(self.state_key, STATE_PURPOSE, state, STATE_TTL_SECONDS),
        }

    def _state(self, ex: Exchange, name: str, arguments: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """The sealed request state the caller sent back, if it is this caller's, for this tool and arguments."""
        state = unseal(self.state_key, STATE_PURPOSE, params.get("requestState"))
        if not isinstance(state, dict) or state.get("f") != _fingerprint(ex, name, arguments):
            raise McpError(INVALID_PARAMS, "requestState is invalid, expired, or belongs to another request")
        return state

    def _wanted(self) -> frozenset[str]:
        """Which of its resources Bastion's listeners want to hear about."""
        wanted = self.broadcaster.wanted_resources() if self.broadcaster is not None else set()
        return frozenset(uri for uri in wanted if self.serves_resource(uri))

    async def _heard(self, message: dict[str, Any]) -> None:
        """A message on its notification stream (watch.py): lists changed, a resource changed, or a request."""
        method, params = message.get("method"), message.get("params")
        if "id" in message and isinstance(method, str):  # asked outside any call: there is no caller to ask
            answer: dict[str, Any] | McpError = (
                {} if method == "ping" else McpError(METHOD_NOT_FOUND, f"{method} outside a call: no one to ask")
            )
            client = self.connections.watched
            if client is not None:
                await client.respond(message["id"], answer)
        elif method in LIST_CHANGES:
            self.refresh_soon()
        elif method == "notifications/resources/updated" and isinstance(params, dict):
            uri = params.get("uri")
            # Only one of its own resources: a server cannot speak for Bastion's or another server's.
            if isinstance(uri, str) and self.serves_resource(uri) and self.broadcaster is not None:
                await self.broadcaster.deliver(Change("resource_updated", uri))

    def refresh_soon(self) -> None:
        """Its lists changed (it said so): list them again now rather than at the next refresh."""
        if self._keeping is not None and not self._keeping.done():
            self._keeping.cancel()
        self._keeping = asyncio.get_running_loop().create_task(
            self._keep_current(), name=f"bastion-gateway-{self.name}"
        )

    def _served_prompts(self, listed: list[Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        prompts, names = [], {}
        for prompt in listed:
            if _has_str(prompt, "name") and (served := self.config.prefix + prompt["name"]) not in names:
                names[served] = prompt["name"]
                prompts.append(prompt | {"name": served})
        return prompts, names

    def _served(self, listed: list[Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
        config = self.config
        definitions, names = [], {}
        for tool in listed:
            theirs = tool.get("name") if isinstance(tool, dict) else None
            if not isinstance(theirs, str) or not isinstance(tool.get("inputSchema"), dict):
                continue
            wanted = any(fnmatchcase(theirs, glob) for glob in config.tools)
            if not wanted or any(fnmatchcase(theirs, glob) for glob in config.exclude):
                continue
            served = config.rename.get(theirs) or config.prefix + theirs
            if served in names:
                continue
            names[served] = theirs
            # Not `execution` (the tasks extension): Bastion would have to run its tasks, which it does not yet.
            definitions.append({key: value for key, value in tool.items() if key != "execution"} | {"name": served})
        return definitions, names

    async def _keep_current(self) -> None:
        pause = 1.0
        while True:
            try:
                await self.refresh()
            except WaitingForCaller:
                await asyncio.sleep(REFRESH_SECONDS)  # a caller's listing lists it (ensure_listed); then this does
                continue
            except (BackendUnavailable, McpError) as exc:
                self._sampled.warning("gateway server %s: %s; trying again in %.0f s", self.name, exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
                continue
            pause = 1.0
            if self.connections.refresh_every is None:
                return
            await asyncio.sleep(self.connections.refresh_every)


class _Relay:
    """What the server sends while it works on a call, passed on to the caller: progress (under the caller's own
    token), log messages at the level the caller asked for or above, word that its lists changed, and its questions
    for the client (elicitation, sampling, roots) when the caller said it can answer that kind: asked mid-call (a
    2025 session with a stream), or handed back as input_required with the call held (a 2026-07-28 caller)."""

    def __init__(self, ex: Exchange, server: RemoteServer, client: Client) -> None:
        self.ex = ex  # the caller's request (a held call's: the one that resumed it last)
        self.server = server
        self.client = client
        # For a 2026-07-28 caller of a 2025 server: where its questions wait for the caller (held.py).
        self.questions: asyncio.Queue[Question] | None = None

    async def message(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params")
        if not isinstance(method, str):
            return
        params = params if isinstance(params, dict) else {}
        if "id" in message:
            answer = await (self._held(method, params) if self.questions is not None else self._asked(method, params))
            await self.client.respond(message["id"], answer)
        elif method == "notifications/progress" and self.ex.progress_token is not None:
            await self.ex.notify(method, {**params, "progressToken": self.ex.progress_token})
        elif method == "notifications/message" and wanted_level(params.get("level"), self.ex.log_level):
            await self.ex.notify(method, params)
        elif method in LIST_CHANGES:
            self.server.refresh_soon()

    async def answers(self, requests: Any) -> dict[str, Any] | None:
        """The caller's answers to a 2026-07-28 server's input requests, or None if it cannot give one."""
        if not isinstance(requests, dict):
            return None
        answers = {}
        for key, request in requests.items():
            method = request.get("method") if isinstance(request, dict) else None
            params = request.get("params") if isinstance(request, dict) else None
            if not isinstance(method, str):
                return None
            answer = await self._asked(method, params if isinstance(params, dict) else {})
            if isinstance(answer, McpError):
                return None
            answers[key] = answer
        return answers

    async def _held(self, method: str, params: dict[str, Any]) -> dict[str, Any] | McpError:
        """A question to put to a 2026-07-28 caller: handed to the call's holder, answered when the caller sends
        the call again with its answer."""
        refused = self._refused(method)
        if refused is not None:
            return refused
        assert self.questions is not None
        question = Question(method, params)
        await self.questions.put(question)
        answer: dict[str, Any] | McpError = await question.answer
        return answer

    def _refused(self, method: str) -> McpError | None:
        """Why the caller cannot be asked this, if it cannot."""
        capability = ASKS.get(method)
        if capability is None:
            return McpError(METHOD_NOT_FOUND, f"Method not found: {method}")
        if capability not in self.ex.client_capabilities:
            return McpError(METHOD_NOT_FOUND, f"the client did not say it supports {capability}")
        return None

    async def _asked(self, method: str, params: dict[str, Any]) -> dict[str, Any] | McpError:
        refused = self._refused(method)
        if refused is not None:
            return refused
        if self.ex.send_request is None:
            return McpError(METHOD_NOT_FOUND, f"{method} cannot be put to this client mid-call (no stream to it)")
        try:
            answer = await self.ex.send_request(method, params)
        except McpError as exc:
            return exc
        return answer if isinstance(answer, dict) else {}


async def _all(client: Client, method: str, key: str) -> list[Any]:
    listed: list[Any] = []
    params: dict[str, Any] = {}
    for _ in range(MAX_PAGES):
        page = await client.request(method, params)
        items = page.get(key)
        listed += items if isinstance(items, list) else []
        cursor = page.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            break
        params = {"cursor": cursor}
    return listed


def _resumed(state: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A 2026-07-28 server's call sent again: the caller's answers, and the server's own request state."""
    responses = params.get("inputResponses")
    if not isinstance(responses, dict):
        raise McpError(INVALID_PARAMS, "inputResponses must be an object")
    resumed: dict[str, Any] = {"inputResponses": responses}
    if state.get("s") is not None:
        resumed["requestState"] = state["s"]
    return resumed


def _fingerprint(ex: Exchange, name: str, arguments: dict[str, Any]) -> str:
    subject = getattr(ex.principal, "subject", None)
    return hashlib.sha256(orjson.dumps([subject, name, arguments], option=orjson.OPT_SORT_KEYS)).hexdigest()


def _has_str(item: Any, key: str) -> bool:
    return isinstance(item, dict) and isinstance(item.get(key), str)


def _pattern(uri_template: str) -> re.Pattern[str]:
    """The URIs an RFC 6570 template of the server's can produce, near enough to route a read to it: {+x} and
    {#x} may span slashes, other expressions one segment's worth."""
    parts = re.split(r"(\{[^}]*\})", uri_template)
    regex = "".join(
        re.escape(part) if i % 2 == 0 else (".+" if part[1:2] in ("+", "#") else "[^/?#]+")
        for i, part in enumerate(parts)
    )
    return re.compile(f"^{regex}$")
