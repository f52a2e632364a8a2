"""An MCP client for the servers Bastion fronts: Streamable HTTP, in either protocol era, with what Bastion was
configured to send them (never a caller's token).

`connect` finds the era: 2026-07-28 first (server/discover), else 2025-11-25 (initialize, a session if the server
keeps them), unless the settings name one. A request's answer is read whether it comes as JSON or as an event
stream, every read bounded; messages the server sends before its answer (progress, log lines) go to `on_message`.
A 2025 session the server forgot (404) is opened again once, and the request sent again.

Errors: the server's own JSON-RPC errors are raised as McpError (the caller is told what it said); anything else
(unreachable, a refusal of Bastion's credential, an answer out of protocol) as BackendUnavailable.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

import orjson

from ..http_client import HttpError, Origin, Response
from ..mcp import versions
from ..mcp.errors import METHOD_NOT_FOUND, McpError
from ..mcp.headers import NAME_SOURCE, encode_value

if TYPE_CHECKING:
    from ..ops.tracing import Tracing

MAX_ANSWER_BYTES = 16 * 1024 * 1024  # an answer; a stream of notifications is opened again past it
LISTEN_IDLE_SECONDS = 300.0  # a notification stream silent this long is opened again (a dead connection shows)
CLIENT_INFO = {"name": "bastion-gateway", "version": "1"}
# What Bastion says it can do when it opens a session: what it relays to its own callers, each asked in turn. A
# caller that cannot answer has the server told so (remote.py), as if the server had asked it directly.
CLIENT_CAPABILITIES: dict[str, Any] = {"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {}}
OnMessage = Callable[[dict[str, Any]], Awaitable[None]]


class BackendUnavailable(Exception):
    """The server could not be reached, refused Bastion, or answered out of protocol; the message says which."""


class NoStream(Exception):
    """The server keeps no stream of notifications outside calls (a 2025 server without sessions or without a GET
    stream, a 2026-07-28 server without subscriptions/listen): what it offers can only be listed again."""


async def upstream_token(principal: Any, provider: str) -> str:
    """The caller's current token at an upstream provider (renewed first if it expired), for a fronted server."""
    fresh = getattr(principal, "fresh_upstream_token", None)
    if fresh is None:
        raise BackendUnavailable(f"it needs the caller's {provider} account, and this server has no sign-in")
    try:
        token: str = await fresh(provider, ())
    except Exception as exc:  # UpstreamError: not signed in with it, or it cannot be renewed
        raise BackendUnavailable(f"it needs your {provider} account: {exc}") from None
    return token


class McpClient:
    def __init__(
        self,
        http: Origin,
        *,
        headers: dict[str, str] | None = None,
        version: str = "auto",
        credential: Callable[[], Awaitable[dict[str, str]]] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.http = http
        self.credential = credential  # headers worked out for each request (a caller's own token)
        self.tracing = tracing  # a CLIENT span per request, its trace context sent with it
        self.headers = {"accept": "application/json, text/event-stream", **(headers or {})}
        self.wanted = version
        self.version: str | None = None  # once connected
        self.session: str | None = None  # a 2025 session's id, if the server keeps sessions
        self.capabilities: dict[str, Any] = {}  # what it said it offers
        self._ready = False  # connected: the era found, the session (if any) open, its capabilities known
        self._ids = itertools.count(1)
        self._connecting = asyncio.Lock()  # concurrent requests open one session, not one each
        self._telling: set[asyncio.Task[None]] = set()  # cancellations on their way to the server

    @property
    def modern(self) -> bool:
        return self.version in versions.MODERN

    async def connect(self) -> dict[str, Any]:
        """Find the era and open a session if needed; the server's discover or initialize result."""
        self.version, self.session, self._ready = None, None, False
        if self.wanted in ("auto", *versions.MODERN):
            try:
                self.version = versions.LATEST
                discovered = await self._send("server/discover", {})
                self.capabilities = _capabilities(discovered)
                self._ready = True
                return discovered
            except (McpError, BackendUnavailable):
                self.version = None
                if self.wanted != "auto":
                    raise
        legacy = versions.LATEST_LEGACY if self.wanted == "auto" else self.wanted
        params = {"protocolVersion": legacy, "capabilities": CLIENT_CAPABILITIES, "clientInfo": CLIENT_INFO}
        result, session = await self._exchange("initialize", params)
        agreed = result.get("protocolVersion")
        if agreed not in versions.LEGACY:
            raise BackendUnavailable(f"it offered protocol version {agreed!r}, which Bastion does not speak")
        self.version, self.session = agreed, session
        self.capabilities = _capabilities(result)
        await self._notify("notifications/initialized")
        self._ready = True
        return result

    async def connected(self) -> None:
        """Connect, unless connected already (concurrent callers open one session, not one each)."""
        if not self._ready:
            async with self._connecting:
                if not self._ready:
                    await self.connect()

    async def request(self, method: str, params: dict[str, Any], on_message: OnMessage | None = None) -> dict[str, Any]:
        await self.connected()
        session = self.session
        try:
            return await self._send(method, params, on_message)
        except _SessionGone:
            async with self._connecting:
                if self.session == session:  # not yet opened again by a request that met the same 404
                    await self.connect()
            return await self._send(method, params, on_message)

    async def listen(self, resources: Collection[str], on_message: OnMessage) -> None:
        """Read what the server says outside calls (list changes, updates of `resources`), each message to
        `on_message`, until its stream ends or fails (BackendUnavailable); NoStream if it keeps none. A 2026-07-28
        server is sent subscriptions/listen (its answer is the stream); a 2025 session's stream is its GET stream,
        its resources subscribed to with resources/subscribe (`subscribe`)."""
        await self.connected()
        if self.modern:
            offers = self.capabilities
            wanted: dict[str, Any] = {
                f"{kind}ListChanged": True for kind in ("tools", "prompts", "resources") if _offers(offers, kind)
            }
            subscribable = _offers(offers, "resources", "subscribe")
            if not wanted and not subscribable:
                raise NoStream("it offers no notifications to listen for")
            if resources and subscribable:
                wanted["resourceSubscriptions"] = sorted(resources)
            try:
                await self._exchange(
                    "subscriptions/listen", {"notifications": wanted}, on_message, read_timeout=LISTEN_IDLE_SECONDS
                )
            except McpError as exc:
                if exc.code == METHOD_NOT_FOUND:
                    raise NoStream("it does not serve subscriptions/listen") from None
                raise
            return
        if self.session is None:
            raise NoStream("it keeps no session, so no stream outside calls")
        try:
            headers = {**self._headers(None), **await self._credential(), "accept": "text/event-stream"}
            response = await self.http.request("GET", headers, read_timeout=LISTEN_IDLE_SECONDS)
            try:
                if response.status == 405:
                    raise NoStream("it has no GET stream")
                if response.status == 404:
                    self._ready = False  # the session is gone: the next request (or listen) opens another
                    raise BackendUnavailable("it no longer knows Bastion's session")
                kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if response.status != 200 or kind != "text/event-stream":
                    raise BackendUnavailable(f"it answered the GET stream with {response.status}")
                async for message in _events(response):
                    await on_message(message)
            finally:
                response.close()
        except HttpError as exc:
            raise BackendUnavailable(str(exc)) from None

    async def subscribe(self, uri: str, subscribed: bool = True) -> None:
        """resources/subscribe (or unsubscribe) on a 2025 session; for a 2026-07-28 server, listen names them."""
        await self.request("resources/subscribe" if subscribed else "resources/unsubscribe", {"uri": uri})

    async def respond(self, message_id: Any, answer: dict[str, Any] | McpError) -> None:
        """Answer a request the server made mid-call: the caller's result, or an error."""
        body = orjson.dumps(response_to(message_id, answer))
        with contextlib.suppress(BackendUnavailable):
            await self._post_only(body)

    async def close(self) -> None:
        """End a 2025 session (the server may keep it otherwise until it expires)."""
        if self.session is not None:
            with contextlib.suppress(HttpError, BackendUnavailable):
                response = await self.http.request("DELETE", {**self._headers(None), **await self._credential()})
                try:
                    await response.read(MAX_ANSWER_BYTES)
                finally:
                    response.close()
            self.session = None
        await self.http.aclose()

    # --- the wire ---------------------------------------------------------------------------------------
    async def _send(self, method: str, params: dict[str, Any], on_message: OnMessage | None = None) -> dict[str, Any]:
        result, _ = await self._exchange(method, params, on_message)
        return result

    def _headers(self, method: str | None, params: dict[str, Any] | None = None) -> dict[str, str]:
        headers = dict(self.headers)
        if self.version is not None:
            headers["mcp-protocol-version"] = self.version
        if self.session is not None:
            headers["mcp-session-id"] = self.session
        if self.modern and method is not None:
            headers["mcp-method"] = method
            source = NAME_SOURCE.get(method)
            if source is not None and params is not None and isinstance(params.get(source), str):
                headers["mcp-name"] = encode_value(params[source])
        return headers

    async def _exchange(
        self,
        method: str,
        params: dict[str, Any],
        on_message: OnMessage | None = None,
        read_timeout: float | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        if self.tracing is None or method == "subscriptions/listen":  # (a stream held for minutes: no span)
            return await self._exchange_now(method, params, on_message, read_timeout, {})
        source = NAME_SOURCE.get(method)
        target = params.get(source) if source is not None else None
        with self.tracing.mcp_client_call(
            method, target if isinstance(target, str) else "", self.http.host, self.http.port, self.session
        ) as trace:
            if trace:  # SEP-414: the trace context in _meta too, for servers that read it there
                params = {**params, "_meta": {**(params.get("_meta") or {}), **trace}}
            return await self._exchange_now(method, params, on_message, read_timeout, trace)

    async def _exchange_now(
        self,
        method: str,
        params: dict[str, Any],
        on_message: OnMessage | None,
        read_timeout: float | None,
        trace: dict[str, str],
    ) -> tuple[dict[str, Any], str | None]:
        if self.modern:
            meta = {
                versions.META_PROTOCOL_VERSION: self.version,
                versions.META_CLIENT_INFO: CLIENT_INFO,
                versions.META_CLIENT_CAPABILITIES: CLIENT_CAPABILITIES,
                **(params.get("_meta") or {}),
            }
            params = {**params, "_meta": meta}
        message_id = next(self._ids)
        body = orjson.dumps({"jsonrpc": "2.0", "id": message_id, "method": method, "params": params})
        headers = {
            **trace,
            **self._headers(method, params),
            **await self._credential(),
            "content-type": "application/json",
        }
        try:
            response = await self.http.request("POST", headers, body, read_timeout=read_timeout)
            try:
                # (Cancelled here, a 2026-07-28 server learns it from the closed connection; a session's is told.)
                if response.status == 404 and self.session is not None:
                    raise _SessionGone
                if response.status in (401, 403):
                    raise BackendUnavailable(f"it refused Bastion's credential ({response.status})")
                kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if kind == "text/event-stream" and response.status == 200:
                    answer = await _from_stream(response, message_id, on_message)
                else:
                    parsed = _parsed(await response.read(MAX_ANSWER_BYTES))
                    if parsed is None:
                        raise BackendUnavailable(f"it answered {response.status} without a JSON-RPC message")
                    answer = parsed
                session = response.headers.get("mcp-session-id")
            finally:
                response.close()
        except HttpError as exc:
            raise BackendUnavailable(str(exc)) from None
        except asyncio.CancelledError:
            if self.session is not None:
                telling = asyncio.get_running_loop().create_task(self._tell_cancelled(message_id))
                self._telling.add(telling)
                telling.add_done_callback(self._telling.discard)
            raise
        return result_of(answer), session or self.session

    async def _notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._post_only(orjson.dumps(message))

    async def _post_only(self, body: bytes) -> None:
        """A notification or a response: the server answers 202 with no body."""
        try:
            headers = {**self._headers(None), **await self._credential(), "content-type": "application/json"}
            response = await self.http.request("POST", headers, body)
            try:
                await response.read(MAX_ANSWER_BYTES)
            finally:
                response.close()
        except HttpError as exc:
            raise BackendUnavailable(str(exc)) from None

    async def _credential(self) -> dict[str, str]:
        return await self.credential() if self.credential is not None else {}

    async def _tell_cancelled(self, message_id: int) -> None:
        with contextlib.suppress(BackendUnavailable):
            cancelled = {"requestId": message_id, "reason": "the client cancelled the request"}
            await self._notify("notifications/cancelled", cancelled)


_LINE_END = re.compile(r"\r\n|\r|\n")


class _SessionGone(Exception):
    """The server no longer knows the session (404): open another."""


def _parsed(data: bytes) -> dict[str, Any] | None:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


async def _lines(response: Response) -> AsyncIterator[str]:
    """An event stream's lines (LF, CRLF or CR ends them), the whole stream bounded by MAX_ANSWER_BYTES."""
    pending = ""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    async for chunk in response.chunks(MAX_ANSWER_BYTES):
        text = pending + decoder.decode(chunk)
        held = text.endswith("\r")  # perhaps the first half of a CRLF: wait for the next chunk to tell
        *complete, pending = _LINE_END.split(text[:-1] if held else text)
        pending += "\r" if held else ""
        for line in complete:
            yield line
    if pending:
        yield pending


async def _events(response: Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an event stream, as they arrive."""
    data: list[str] = []
    async for line in _lines(response):
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line == "" and data:
            text, data = "\n".join(data), []
            if not text.strip():
                continue  # a priming event (an id to resume from, no message)
            try:
                message = json.loads(text)
            except ValueError:
                raise BackendUnavailable("it sent an event that is not JSON") from None
            if isinstance(message, dict):
                yield message


async def _from_stream(response: Response, message_id: int, on_message: OnMessage | None) -> dict[str, Any]:
    """Read events until the answer to `message_id`; the rest go to on_message."""
    async for message in _events(response):
        if message.get("id") == message_id and ("result" in message or "error" in message):
            return message
        if on_message is not None:
            await on_message(message)
    raise BackendUnavailable("its event stream ended without an answer")


def _offers(capabilities: dict[str, Any], kind: str, feature: str = "listChanged") -> bool:
    """Whether the server said it offers `kind` with `feature` (capabilities.tools.listChanged, ...)."""
    offered = capabilities.get(kind)
    return isinstance(offered, dict) and offered.get(feature) is True


def _capabilities(result: dict[str, Any]) -> dict[str, Any]:
    capabilities = result.get("capabilities")
    return capabilities if isinstance(capabilities, dict) else {}


def response_to(message_id: Any, answer: dict[str, Any] | McpError) -> dict[str, Any]:
    if isinstance(answer, McpError):
        return {"jsonrpc": "2.0", "id": message_id, "error": answer.to_error()}
    return {"jsonrpc": "2.0", "id": message_id, "result": answer}


def result_of(answer: dict[str, Any]) -> dict[str, Any]:
    error = answer.get("error")
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        raise McpError(code if isinstance(code, int) else -32603, str(message or "error"), error.get("data"))
    result = answer.get("result")
    if not isinstance(result, dict):
        raise BackendUnavailable("it answered without a result")
    return result
