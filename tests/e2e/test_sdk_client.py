"""The official MCP Python SDK client against `bastion serve`, over Streamable HTTP in each of its protocol
modes and over stdio: every Context feature, as a user's client would see it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import mcp.types as types
import pytest
from mcp.client.stdio import StdioServerParameters

from mcp import Client
from tests.waiting import DEADLINE_SECONDS, eventually

from .conftest import ROOT, bastion_server

pytestmark = pytest.mark.e2e
FEATURES = ROOT / "tests" / "e2e" / "servers" / "features.py"
SECRET_ENV = {"FEATURES_API_KEY": "s3cret-value-123"}
TRANSPORTS = [
    ("http", "legacy"),
    ("http", "2026-07-28"),
    ("http", "auto"),
    ("stdio", "legacy"),
    ("stdio", "2026-07-28"),
]


@pytest.fixture(scope="module")
def features_url():
    with bastion_server(FEATURES, env=SECRET_ENV) as url:
        yield url


class Recorder:
    """Callbacks a client registers, recording what the server asked and sent."""

    def __init__(self) -> None:
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.notifications: list[object] = []
        self.elicitations: list[types.ElicitRequestParams] = []

    async def elicit(self, ctx, params):
        self.elicitations.append(params)
        if getattr(params, "mode", "form") == "url":
            return types.ElicitResult(action="decline")
        if params.message == "Confirm?":
            return types.ElicitResult(action="accept", content={"ok": True})
        return types.ElicitResult(action="accept", content={"name": "Ada", "age": 36})

    async def sample(self, ctx, params):
        text = params.messages[0].content.text
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=text.upper()),
            model="test-model",
            stop_reason="endTurn",
        )

    async def roots(self, ctx):
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])

    async def log(self, params):
        self.logs.append(params)

    async def message(self, message):
        self.notifications.append(message)


def client_for(transport: str, mode: str, url: str, recorder: Recorder) -> Client:
    target: object = url
    if transport == "stdio":
        target = StdioServerParameters(
            command=sys.executable,
            args=["-m", "bastion.cli", "serve", str(FEATURES), "--stdio"],
            env=SECRET_ENV,
            cwd=str(ROOT),
        )
    return Client(
        target,
        mode=mode,
        elicitation_callback=recorder.elicit,
        sampling_callback=recorder.sample,
        list_roots_callback=recorder.roots,
        logging_callback=recorder.log,
        message_handler=recorder.message,
        log_level="debug" if mode != "legacy" else None,
    )


@pytest.fixture(params=TRANSPORTS, ids=[f"{t}-{m}" for t, m in TRANSPORTS])
def connect(request, features_url):
    """Opens a client for this transport and mode inside the test's own task (anyio needs that)."""
    transport, mode = request.param

    @asynccontextmanager
    async def opened() -> AsyncIterator[tuple[Client, Recorder, str]]:
        recorder = Recorder()
        async with client_for(transport, mode, features_url, recorder) as client:
            yield client, recorder, mode

    return opened


def text(result: types.CallToolResult) -> str:
    assert result.content and isinstance(result.content[0], types.TextContent), result
    return result.content[0].text


async def test_negotiates_the_expected_revision(connect):
    async with connect() as (client, _, mode):
        expected = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.protocol_version == expected
        assert text(await client.call_tool("who_am_i", {})) == f"None {expected}"


async def test_tools_schemas_and_structured_output(connect):
    async with connect() as (client, _, _):
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"add", "forecast", "slow", "signup"} <= set(listed)
        assert listed["add"].input_schema["required"] == ["a", "b"]
        assert listed["forecast"].output_schema["properties"]["celsius"] == {"type": "number"}
        added = await client.call_tool("add", {"a": 2, "b": 40})
        assert text(added) == "42" and added.structured_content == {"result": 42}
        forecast = await client.call_tool("forecast", {"city": "Lyon"})
        assert forecast.structured_content == {"city": "Lyon", "celsius": 21.5, "sunny": True}
        assert text(await client.call_tool("blocking", {"seconds": 0.05})) == "done"


async def test_tool_errors_are_results(connect):
    async with connect() as (client, _, _):
        refused = await client.call_tool("refuse", {})
        assert refused.is_error and text(refused) == "not today"
        bad = await client.call_tool("add", {"a": "x", "b": 1})
        assert bad.is_error and "a:" in text(bad)


async def test_sampling_elicitation_and_roots(connect):
    async with connect() as (client, recorder, _):
        assert text(await client.call_tool("summarize", {"text": "hello"})) == "test-model: SUMMARIZE: HELLO"
        assert text(await client.call_tool("signup", {})) == "Ada (36) confirmed=True"
        assert [e.message for e in recorder.elicitations][-2:] == ["Your details?", "Confirm?"]
        assert text(await client.call_tool("visit", {})) == "decline"
        url_request = recorder.elicitations[-1]
        assert url_request.mode == "url" and url_request.url == "https://example.com/authorize"
        roots = await client.call_tool("my_roots", {})
        assert roots.structured_content == {"result": ["file:///work/project"]}


async def test_logging_and_progress(connect):
    async with connect() as (client, recorder, _):
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value, total, message):
            progress.append((value, total, message))

        assert text(await client.call_tool("chatty", {}, progress_callback=on_progress)) == "talked"
        assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
        assert [(log.level, log.data, log.logger) for log in recorder.logs][:3] == [
            ("info", "step 0", "chatty"),
            ("info", "step 1", "chatty"),
            ("info", "step 2", "chatty"),
        ]


async def test_secrets_reach_only_tools_that_declare_them(connect):
    async with connect() as (client, _, _):
        assert text(await client.call_tool("secret_length", {})) == str(len(SECRET_ENV["FEATURES_API_KEY"]))
        refused = await client.call_tool("undeclared_secret", {})
        assert refused.is_error and "s3cret" not in text(refused)


async def test_cancelling_a_call_stops_the_tool(connect):
    async with connect() as (client, _, _):

        async def cancelled() -> int:
            return (await client.call_tool("cancelled_count", {})).structured_content["result"]

        before = await cancelled()
        running = anyio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            running.set()  # `slow` reports progress 0 first thing: the tool is running

        async with anyio.create_task_group() as group:
            group.start_soon(partial(client.call_tool, "slow", {"seconds": 30}, progress_callback=on_progress))
            with anyio.fail_after(DEADLINE_SECONDS):
                await running.wait()
            group.cancel_scope.cancel()  # cancelling the call, not a timer, stops the tool

        async def counted() -> bool:
            return await cancelled() > before

        await eventually(counted, "the server counting the cancelled call")
        assert await cancelled() == before + 1


async def test_legacy_notifications_resource_updates_and_list_changes(features_url):
    recorder = Recorder()
    async with client_for("http", "legacy", features_url, recorder) as client:
        await client.subscribe_resource("features://counter")
        value = (await client.call_tool("bump", {})).structured_content["result"]
        assert (await client.read_resource("features://counter")).contents[0].text == str(value)
        await client.call_tool("add_tool", {"name": "legacy_extra"})
        with anyio.fail_after(DEADLINE_SECONDS):
            while not {"notifications/resources/updated", "notifications/tools/list_changed"} <= {
                getattr(getattr(m, "root", m), "method", None) for m in recorder.notifications
            }:
                await anyio.sleep(0.05)
        assert "legacy_extra" in {t.name for t in (await client.list_tools()).tools}


async def test_modern_listen_stream_carries_changes(features_url):
    from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

    recorder = Recorder()
    async with client_for("http", "2026-07-28", features_url, recorder) as client:
        async with client.listen(tools_list_changed=True, resource_subscriptions=["features://counter"]) as sub:
            await client.call_tool("bump", {})
            await client.call_tool("add_tool", {"name": "modern_extra"})
            seen: set[type] = set()
            with anyio.fail_after(DEADLINE_SECONDS):
                async for event in sub:
                    seen.add(type(event))
                    if isinstance(event, ResourceUpdated):
                        assert event.uri == "features://counter"
                    if {ResourceUpdated, ToolsListChanged} <= seen:
                        break
        assert "modern_extra" in {t.name for t in (await client.list_tools(cache_mode="bypass")).tools}
