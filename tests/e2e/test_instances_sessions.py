"""A legacy (2025-11-25) session of the official SDK client, signed in through Bastion's OAuth, served by three
`bastion serve` instances behind HAProxy round robin without affinity (PostgreSQL, Redis, a Redis Cluster): every
request of the one session lands on whichever instance is next, and the session works as on one server. The
client's GET stream, held by one instance, hears resource updates raised on each of the others; elicitations asked
by a call on one instance are answered by POSTs that land on another; ending the session leaves nothing of it in
the store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import mcp.types as types
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client
from tests.waiting import DEADLINE_SECONDS, eventually

from .instances import INSTANCES, Deployment, deployed
from .test_sdk_oauth import HeadlessBrowser, MemoryStorage, provider_for

pytestmark = pytest.mark.e2e
BOARD = "test://board"
SESSION_KINDS = ("mcpsession:", "mcprev:", "mcpanswer:", "mcpstream:", "mcpevent:")


@pytest.fixture(scope="module", params=["postgres", "redis", "redis-cluster"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # Event streams on: a legacy call's elicitation rides on its POST's stream.
    with deployed(
        request.param, tmp_path_factory.mktemp(request.param), settings={"BASTION_JSON_RESPONSE": "false"}
    ) as d:
        yield d


class Seen:
    """What the client was told and asked."""

    def __init__(self) -> None:
        self.updates: list[str] = []
        self.asked = 0

    async def elicit(self, ctx: object, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked += 1
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def message(self, message: object) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, types.ResourceUpdatedNotification):
            self.updates.append(str(root.params.uri))


async def touch_until(client: Client, seen: Seen, enough: Callable[[set[int]], bool], tries: int) -> set[int]:
    """Raise resource updates one at a time, each on whichever process serves the call, until the processes that
    raised them are `enough` (at most `tries` calls): each update must reach the session's GET stream, once (one
    at a time, since identical updates waiting together are told once). The processes that raised them."""
    touched: set[int] = set()
    for _ in range(tries):
        before = len(seen.updates)
        touched.add(int(tool_text(await client.call_tool("touch_board", {}))))
        with anyio.fail_after(DEADLINE_SECONDS):
            while len(seen.updates) == before:
                await anyio.sleep(0.02)
        assert seen.updates == [BOARD] * (before + 1)
        if enough(touched):
            break
    return touched


@asynccontextmanager
async def legacy_session(url: str, seen: Seen, limits: httpx2.Limits | None = None) -> AsyncIterator[Client]:
    """The official SDK client's 2025-11-25 session at `url`, signed in through Bastion's OAuth, telling `seen`
    what it hears; `limits` for its connections (none kept alive: every request on whichever process accepts)."""
    provider = provider_for(url, MemoryStorage(), HeadlessBrowser())
    pool = {"limits": limits} if limits is not None else {}
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30, **pool) as http,
        Client(
            streamable_http_client(url, http_client=http),
            mode="legacy",
            elicitation_callback=seen.elicit,
            message_handler=seen.message,
        ) as client,
    ):
        assert client.protocol_version == "2025-11-25"
        yield client


async def session_records(d: Deployment) -> list[str]:
    async with d.records() as store:
        return [key for prefix in SESSION_KINDS for key in await store.keys(prefix)]


async def test_one_legacy_session_is_served_by_all_three_instances(deployment, monkeypatch):
    d = deployment
    monkeypatch.setenv("SSL_CERT_FILE", str(d.trust))  # the SDK client and the headless browser trust the proxy
    url = f"{d.base}/mcp"
    seen = Seen()
    async with legacy_session(url, seen) as client:
        # One session, every instance: round robin sends each request to the next (bounded loops: an instance
        # that misses a health check on a busy machine is out of the rotation for a moment).
        pids: set[int] = set()
        for _ in range(10 * INSTANCES):
            pids.add(int(tool_text(await client.call_tool("pid", {}))))
            if len(pids) == INSTANCES:
                break
        assert len(pids) == INSTANCES, pids

        # The GET stream is held by one instance; an update raised on each instance reaches it, once.
        await client.subscribe_resource(BOARD)
        assert await touch_until(client, seen, lambda touched: touched == pids, 10 * INSTANCES) == pids

        # Each question is asked on one instance's stream; the answer is POSTed to the next instance.
        askers: set[int] = set()
        asks = 0
        for _ in range(10 * INSTANCES):
            said, _, pid = tool_text(await client.call_tool("ask_name", {})).partition(" in ")
            assert said == "Ada"
            askers.add(int(pid))
            asks += 1
            if askers == pids:
                break
        assert seen.asked == asks and askers == pids
        assert [k for k in await session_records(d) if k.startswith("mcpanswer:")] == []  # each taken once

    # Closing the client ended the session (DELETE, on whichever instance): nothing of it is left.
    async def gone() -> bool:
        return await session_records(d) == []

    await eventually(gone, "the session's records deleted")
    d.assert_clean()


def tool_text(result: types.CallToolResult) -> str:
    assert not result.is_error and isinstance(result.content[0], types.TextContent), result
    return result.content[0].text
