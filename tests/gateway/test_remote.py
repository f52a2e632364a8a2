"""[[gateway.servers]]: an MCP server written with the official Python SDK, served over HTTP, behind Bastion. Its
tools are served beside Bastion's own (filtered, renamed, prefixed), in both protocol eras whatever era Bastion
speaks to it; the official SDK client signs in through Bastion and calls them; the server receives the credential
configured for it, never the caller's token; [policy] scopes apply to its tools as to local ones; a server that
goes away is a clear tool error, and the next call after it is back works."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import Context, MCPServer

from bastion import App
from bastion import Context as BastionContext
from tests.clients import asgi_client
from tests.e2e.test_sdk_oauth import HeadlessBrowser, MemoryStorage, provider_for
from tests.local_server import free_port, serve_in_thread
from tests.mcp.conftest import modern_body, modern_headers
from tests.oauth.conftest import register, settings, tokens_for
from tests.waiting import eventually

BACKEND_TOKEN = "backend-credential-5b1c9e"
SEEN: list[dict[str, Any]] = []


def backend() -> Any:
    server = MCPServer("notes-backend")

    @server.tool()
    async def echo(text: str) -> str:
        """Say it back."""
        return text

    @server.tool()
    async def whoami(ctx: Context) -> str:
        """What the request carried."""
        request = ctx.request_context.request
        SEEN.append({"authorization": request.headers.get("authorization")})
        return "seen"

    @server.tool()
    async def secret_reset() -> str:
        """Never served through the gateway."""
        return "reset"

    @server.resource("notes://readme")
    def readme() -> str:
        """What this server is."""
        return "the notes readme"

    @server.resource("notes://items/{item_id}")
    def item(item_id: str) -> str:
        """One item."""
        return f"item {item_id}"

    @server.prompt()
    def summarize(topic: str) -> str:
        """Ask for a summary."""
        return f"Summarize {topic}"

    return server.streamable_http_app(host="127.0.0.1")


def gateway_settings(url: str, version: str, **policy: Any):
    base = settings()
    server = {
        "name": "notes",
        "url": url,
        "prefix": "notes_",
        "protocol_version": version,
        "token_env": "TEST_GATEWAY_BACKEND_TOKEN",
        "exclude": ["secret_*"],
        "rename": {"echo": "say"},
    }
    return base.model_copy(
        update={
            "gateway": base.gateway.model_validate({"servers": [server]}),
            "policy": base.policy.model_validate({"tools": policy}),
        }
    )


def local_app() -> App:
    app = App("front")

    @app.tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    return app


@pytest.fixture
def backend_port():
    return free_port()


@asynccontextmanager
async def front(
    surface: Any, scope: str | None = None, listed: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """Bastion in process, started, with a signed-in caller's bearer; unless `listed` is false, once its gateway
    has listed the backend's tools (and so its prompts and resources, listed before them)."""
    await surface.lifecycle.start()
    try:
        if listed:
            await tools_listed(surface)
        async with asgi_client(surface) as http:
            tokens = await tokens_for(http, await register(http), scope=scope)
            yield http, {"authorization": f"Bearer {tokens['access_token']}"}
    finally:
        await surface.lifecycle.stop()


async def tools_listed(surface: Any) -> Any:
    """The surface's fronted server, once its tools are listed (it lists them as it starts)."""
    remote = surface.mcp.app.server.sources[0]

    async def listed() -> bool:
        return bool(remote.tools())

    await eventually(listed, "the backend's tools listed")
    return remote


async def listed_names(http: httpx.AsyncClient, bearer: dict[str, str]) -> set[str]:
    answer = await http.post("/mcp", headers={**modern_headers("tools/list"), **bearer}, json=modern_body("tools/list"))
    return {tool["name"] for tool in answer.json()["result"]["tools"]}


async def call(http: httpx.AsyncClient, bearer: dict[str, str], tool: str, arguments: dict) -> httpx.Response:
    return await http.post(
        "/mcp",
        headers={**modern_headers("tools/call", tool), **bearer},
        json=modern_body("tools/call", {"name": tool, "arguments": arguments}),
    )


@pytest.mark.parametrize("version", ["auto", "2025-11-25"])
async def test_the_backends_tools_are_served_beside_bastions_own(backend_port, version, monkeypatch):
    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    SEEN.clear()
    with serve_in_thread(backend(), backend_port) as backend_url:
        surface = local_app().asgi(gateway_settings(f"{backend_url}/mcp", version))
        remote = surface.mcp.app.server.sources[0]
        async with front(surface) as (http, bearer):
            assert await listed_names(http, bearer) == {"add", "say", "notes_whoami"}
            said = await call(http, bearer, "say", {"text": "hello"})
            assert said.json()["result"]["content"][0]["text"] == "hello"
            whoami = await call(http, bearer, "notes_whoami", {})
            assert whoami.json()["result"]["content"][0]["text"] == "seen"
            refused = await call(http, bearer, "notes_secret_reset", {})
            assert refused.json()["error"]["code"] == -32602  # never served: unknown here
            assert remote.connections.client.version == ("2026-07-28" if version == "auto" else "2025-11-25")
    # The backend saw the credential configured for it, never the caller's token.
    assert [{"authorization": f"Bearer {BACKEND_TOKEN}"}] == SEEN
    assert bearer["authorization"].split()[1] not in repr(SEEN)


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_the_sdk_client_calls_a_backend_tool_through_bastion(backend_port, mode, monkeypatch):
    from tests.e2e.test_sdk_oauth import call_tool_text

    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    with serve_in_thread(backend(), backend_port) as backend_url:
        surface = local_app().asgi(gateway_settings(f"{backend_url}/mcp", "auto"))
        with serve_in_thread(surface, free_port()) as base:
            await tools_listed(surface)
            url = f"{base}/mcp"
            storage, browser = MemoryStorage(), HeadlessBrowser("kim")
            assert await call_tool_text(url, provider_for(url, storage, browser), "notes_whoami", mode) == "seen"


async def test_policy_scopes_hold_for_the_backends_tools(backend_port, monkeypatch):
    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    SEEN.clear()
    with serve_in_thread(backend(), backend_port) as backend_url:
        configured = gateway_settings(f"{backend_url}/mcp", "auto", notes_whoami=["notes:admin"])
        async with front(local_app().asgi(configured), scope="mcp") as (http, bearer):
            assert "notes_whoami" not in await listed_names(http, bearer)  # hidden without the scope
            refused = await call(http, bearer, "notes_whoami", {})
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert "notes:admin" in refused.headers["www-authenticate"]
    assert SEEN == []  # the backend was never called


async def test_a_backend_that_goes_away_is_a_clear_tool_error_and_the_next_call_after_it_returns_works(
    backend_port, monkeypatch
):
    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    surface = local_app().asgi(gateway_settings(f"http://127.0.0.1:{backend_port}/mcp", "2025-11-25"))
    remote = surface.mcp.app.server.sources[0]
    async with front(surface, listed=False) as (http, bearer):
        with serve_in_thread(backend(), backend_port):
            await remote.refresh()
            first = (await call(http, bearer, "say", {"text": "one"})).json()["result"]
            assert first["content"][0]["text"] == "one"
        # Gone (and its session with it): Bastion still serves, and says what happened.
        gone = (await call(http, bearer, "say", {"text": "two"})).json()["result"]
        assert gone["isError"] is True
        assert "The server 'notes' behind this gateway is unavailable" in gone["content"][0]["text"]
        with serve_in_thread(backend(), backend_port):  # back, as a restarted process: it knows no session
            back = (await call(http, bearer, "say", {"text": "three"})).json()["result"]
            assert back["content"][0]["text"] == "three" and not back.get("isError")


def working_backend() -> Any:
    server = MCPServer("worker-backend")

    @server.tool()
    async def work(ctx: Context) -> str:
        """Report progress and a log line, then finish."""
        await ctx.report_progress(1, 2, "halfway")
        await ctx.info("working on it")
        return "done"

    return server.streamable_http_app(host="127.0.0.1")


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_progress_and_log_messages_reach_the_caller(backend_port, mode, monkeypatch):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from mcp import Client

    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    progress: list[tuple] = []
    logged: list[tuple] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async def on_log(params: Any) -> None:
        logged.append((params.level, params.data))

    with serve_in_thread(working_backend(), backend_port) as backend_url:
        surface = local_app().asgi(gateway_settings(f"{backend_url}/mcp", "auto"))
        with serve_in_thread(surface, free_port()) as base:
            await tools_listed(surface)
            url = f"{base}/mcp"
            provider = provider_for(url, MemoryStorage(), HeadlessBrowser("ivy"))
            options: dict[str, Any] = {"logging_callback": on_log}
            if mode == "2026-07-28":
                options["log_level"] = "info"
            async with (
                httpx2.AsyncClient(auth=provider, timeout=30) as http,
                Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client,
            ):
                if mode == "legacy":
                    await client.set_logging_level("info")
                result = await client.call_tool("notes_work", {}, progress_callback=on_progress)
    assert result.content[0].text == "done"
    assert progress == [(1.0, 2.0, "halfway")]
    assert logged == [("info", "working on it")]


@pytest.mark.parametrize("version", ["auto", "2025-11-25"])
async def test_the_backends_prompts_and_resources_are_served_too(backend_port, version, monkeypatch):
    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    with serve_in_thread(backend(), backend_port) as backend_url:
        async with front(local_app().asgi(gateway_settings(f"{backend_url}/mcp", version))) as (http, bearer):

            async def ask(method: str, params: dict | None = None, name: str | None = None) -> dict:
                headers = {**modern_headers(method, name), **bearer}
                answer = await http.post("/mcp", headers=headers, json=modern_body(method, params))
                return answer.json()

            assert [p["name"] for p in (await ask("prompts/list"))["result"]["prompts"]] == ["notes_summarize"]
            prompt = await ask(
                "prompts/get", {"name": "notes_summarize", "arguments": {"topic": "MCP"}}, "notes_summarize"
            )
            assert prompt["result"]["messages"][0]["content"]["text"] == "Summarize MCP"
            resources = (await ask("resources/list"))["result"]["resources"]
            assert [r["uri"] for r in resources] == ["notes://readme"]
            templates = (await ask("resources/templates/list"))["result"]["resourceTemplates"]
            assert [t["uriTemplate"] for t in templates] == ["notes://items/{item_id}"]
            readme = await ask("resources/read", {"uri": "notes://readme"}, "notes://readme")
            assert readme["result"]["contents"][0]["text"] == "the notes readme"
            item = await ask("resources/read", {"uri": "notes://items/42"}, "notes://items/42")
            assert item["result"]["contents"][0]["text"] == "item 42"
            unknown = await ask("resources/read", {"uri": "other://x"}, "other://x")
            assert unknown["error"]["code"] == -32602


def asking_backend() -> Any:
    from pydantic import BaseModel

    class Name(BaseModel):
        name: str

    server = MCPServer("asking-backend")

    @server.tool()
    async def greet(ctx: Context) -> str:
        """Ask the user's name, then greet them."""
        answer = await ctx.elicit("What is your name?", Name)
        return f"hello {answer.data.name}" if answer.action == "accept" else answer.action

    return server.streamable_http_app(host="127.0.0.1")


def asking_bastion_backend() -> Any:
    """The same tool written with Bastion: on 2026-07-28 its question comes back as input_required."""
    from pydantic import BaseModel

    from tests.clients import local_settings

    class Name(BaseModel):
        name: str

    app = App("asking-bastion")

    @app.tool
    async def greet(ctx: BastionContext) -> str:
        """Ask the user's name, then greet them."""
        answer = await ctx.elicit("What is your name?", Name)
        return f"hello {answer.data.name}" if answer.action == "accept" else answer.action

    return app.asgi(local_settings(store={"backend": "memory"}))


# Asked mid-call (the SDK's server on a 2025 session), or as input_required (Bastion's, on 2026-07-28).
# A 2026-07-28 caller gets the server's input_required as Bastion's own, and sends its answers back with it; a
# 2025 server's mid-call question reaches it the same way, the call at the server held until the answer comes.
@pytest.mark.parametrize(
    ("version", "mode"),
    [("2025-11-25", "legacy"), ("auto", "legacy"), ("auto", "2026-07-28"), ("2025-11-25", "2026-07-28")],
)
async def test_a_backends_question_is_put_to_the_caller_and_answered_by_them(backend_port, version, mode, monkeypatch):
    import httpx2
    import mcp_types
    from mcp.client.streamable_http import streamable_http_client

    from mcp import Client

    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    asked: list[str] = []

    async def on_elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return mcp_types.ElicitResult(action="accept", content={"name": "Ada"})

    backend_app = asking_backend() if version == "2025-11-25" else asking_bastion_backend()
    with serve_in_thread(backend_app, backend_port) as backend_url:
        surface = local_app().asgi(gateway_settings(f"{backend_url}/mcp", version))
        with serve_in_thread(surface, free_port()) as base:
            await tools_listed(surface)
            url = f"{base}/mcp"
            provider = provider_for(url, MemoryStorage(), HeadlessBrowser("ada"))
            async with (
                httpx2.AsyncClient(auth=provider, timeout=30) as http,
                Client(
                    streamable_http_client(url, http_client=http), mode=mode, elicitation_callback=on_elicit
                ) as client,
            ):
                result = await client.call_tool("notes_greet", {})
    assert asked == ["What is your name?"]
    assert result.content[0].text == "hello Ada"


async def test_a_servers_request_state_goes_back_only_with_its_caller_tool_and_arguments(backend_port, monkeypatch):
    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    with serve_in_thread(asking_bastion_backend(), backend_port) as backend_url:
        surface = local_app().asgi(gateway_settings(f"{backend_url}/mcp", "auto"))
        async with front(surface) as (http, alice):
            bob_tokens = await tokens_for(http, await register(http), username="bob")
            bob = {"authorization": f"Bearer {bob_tokens['access_token']}"}

            async def greet(bearer: dict[str, str], **extra: Any) -> dict:
                answer = await call(http, bearer, "notes_greet", {})
                if extra:
                    body = modern_body("tools/call", {"name": "notes_greet", "arguments": {}, **extra})
                    answer = await http.post(
                        "/mcp", headers={**modern_headers("tools/call", "notes_greet"), **bearer}, json=body
                    )
                return answer.json()

            asked = (await greet(alice))["result"]
            assert asked["resultType"] == "input_required"
            [(key, question)] = asked["inputRequests"].items()
            assert question["method"] == "elicitation/create"
            answers = {key: {"action": "accept", "content": {"name": "Ada"}}}
            state = asked["requestState"]
            # Another caller's answers with this caller's state, or a tampered state: refused.
            stolen = await greet(bob, inputResponses=answers, requestState=state)
            assert stolen["error"]["code"] == -32602 and "requestState" in stolen["error"]["message"]
            tampered = await greet(alice, inputResponses=answers, requestState=state[:-4] + "AAAA")
            assert tampered["error"]["code"] == -32602
            done = await greet(alice, inputResponses=answers, requestState=state)
            assert done["result"]["content"][0]["text"] == "hello Ada"


async def test_a_call_held_for_a_2025_servers_question_resumes_only_for_its_caller_and_only_once(
    backend_port, monkeypatch
):
    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    with serve_in_thread(asking_backend(), backend_port) as backend_url:
        surface = local_app().asgi(gateway_settings(f"{backend_url}/mcp", "2025-11-25"))
        async with front(surface) as (http, alice):
            remote = surface.mcp.app.server.sources[0]
            bob_tokens = await tokens_for(http, await register(http), username="bob")
            bob = {"authorization": f"Bearer {bob_tokens['access_token']}"}

            async def greet(bearer: dict[str, str], **extra: Any) -> dict:
                body = modern_body("tools/call", {"name": "notes_greet", "arguments": {}, **extra})
                headers = {**modern_headers("tools/call", "notes_greet"), **bearer}
                return (await http.post("/mcp", headers=headers, json=body)).json()

            asked = (await greet(alice))["result"]
            assert asked["resultType"] == "input_required" and len(remote.held) == 1  # the server's call waits
            [(key, question)] = asked["inputRequests"].items()
            assert question["method"] == "elicitation/create"
            assert question["params"]["message"] == "What is your name?"
            answers = {key: {"action": "accept", "content": {"name": "Ada"}}}
            state = asked["requestState"]
            stolen = await greet(bob, inputResponses=answers, requestState=state)
            assert stolen["error"]["code"] == -32602 and "requestState" in stolen["error"]["message"]
            assert len(remote.held) == 1  # still Alice's to answer
            done = await greet(alice, inputResponses=answers, requestState=state)
            assert done["result"]["content"][0]["text"] == "hello Ada" and len(remote.held) == 0
            replayed = await greet(alice, inputResponses=answers, requestState=state)
            assert replayed["error"]["code"] == -32602 and "no longer held" in replayed["error"]["message"]


async def test_a_call_through_the_gateway_is_a_client_span_whose_context_reaches_the_server(backend_port, monkeypatch):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from bastion.compose import build

    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", BACKEND_TOKEN)
    heard: list[dict[str, Any]] = []
    server = MCPServer("traced-backend")

    @server.tool()
    async def trace(ctx: Context) -> str:
        """What trace context the request carried."""
        request = ctx.request_context.request
        heard.append({"header": request.headers.get("traceparent"), "meta": ctx.request_context.meta})
        return "traced"

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    with serve_in_thread(server.streamable_http_app(host="127.0.0.1"), backend_port) as backend_url:
        configured = gateway_settings(f"{backend_url}/mcp", "2025-11-25")
        configured = configured.model_copy(update={"tracing": configured.tracing.model_copy(update={"enabled": True})})
        surface = build(local_app(), configured, tracer_provider=provider)
        async with front(surface) as (http, bearer):
            exported.clear()
            answer = await call(http, bearer, "notes_trace", {})
            assert answer.json()["result"]["content"][0]["text"] == "traced"
    spans = exported.get_finished_spans()
    [served] = [span for span in spans if span.name == "tools/call notes_trace"]
    [sent] = [span for span in spans if span.name == "tools/call trace"]
    assert served.kind == SpanKind.SERVER and sent.kind == SpanKind.CLIENT
    assert sent.parent.span_id == served.context.span_id and sent.context.trace_id == served.context.trace_id
    assert sent.attributes["gen_ai.tool.name"] == "trace" and sent.attributes["server.address"] == "127.0.0.1"
    assert sent.attributes["server.port"] == backend_port and sent.attributes["mcp.method.name"] == "tools/call"
    [seen] = heard
    trace_id, span_id = format(sent.context.trace_id, "032x"), format(sent.context.span_id, "016x")
    assert seen["header"].startswith(f"00-{trace_id}-{span_id}-")  # the server's spans join the caller's trace
