"""What a fronted server says outside any call reaches Bastion's own listeners: a resource they subscribed to
changed, its lists changed. In both eras at the server: the official SDK's server on 2026-07-28 (Bastion listens
with subscriptions/listen, naming the resources its listeners want), and a Bastion app on a 2025-11-25 session
(Bastion holds its GET stream and subscribes with resources/subscribe). Each update reaches only the listeners that
asked for that URI; Bastion unsubscribes when none wants it any more; a server cannot announce updates of a
resource that is not its own."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from mcp.server.mcpserver import Context, MCPServer

from bastion import App
from bastion.gateway.client import McpClient
from bastion.gateway.remote import RemoteServer, Shared
from bastion.http_client import Origin
from bastion.settings.gateway import GatewayServer
from tests.clients import asgi_client
from tests.gateway.test_remote import call, gateway_settings, listed_names, tools_listed
from tests.local_server import free_port, serve_in_thread
from tests.mcp.conftest import ACCEPT, modern_body, modern_headers, open_session
from tests.oauth.conftest import register, tokens_for
from tests.sse import Stream
from tests.waiting import eventually

README, OTHER = "notes://readme", "notes://other"
UPDATED, TOOLS_CHANGED = "notifications/resources/updated", "notifications/tools/list_changed"


def sdk_backend() -> Any:
    """2026-07-28: the official SDK's server, whose notifications go to subscriptions/listen streams."""
    server = MCPServer("notes-backend")

    @server.tool()
    async def touch(uri: str, ctx: Context) -> str:
        """Say a resource changed."""
        await ctx.notify_resource_updated(uri)
        return "touched"

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Add a tool, and say so."""
        server.add_tool(lambda: "fresh", name="fresh", description="Added while running.")
        await ctx.notify_tools_changed()
        return "grown"

    for uri in (README, OTHER):
        server.resource(uri, name=uri.rsplit("/", 1)[1])(lambda: "text")
    return server.streamable_http_app(host="127.0.0.1")


def bastion_backend() -> Any:
    """2025-11-25: a Bastion app, holding a session per client, with resources/subscribe and a GET stream."""
    app = App("notes-backend")

    @app.tool
    async def touch(uri: str) -> str:
        """Say a resource changed."""
        await app.notify_resource_updated(uri)
        return "touched"

    @app.tool
    def grow() -> str:
        """Add a tool (its clients are told)."""

        def fresh() -> str:
            """Added while running."""
            return "fresh"

        app.tool(fresh)
        return "grown"

    for uri in (README, OTHER):

        def text() -> str:
            """Some text."""
            return "text"

        app.resource(uri, name=uri.rsplit("/", 1)[1])(text)
    return app


BACKENDS = {
    "2026-07-28 (official SDK)": (lambda: sdk_backend(), "2026-07-28"),
    "2025-11-25 session (Bastion)": (lambda: bastion_backend().asgi(), "2025-11-25"),
}


def listen(surface: Any, bearer: dict[str, str], wanted: dict[str, Any]) -> Stream:
    body = orjson.dumps(modern_body("subscriptions/listen", {"notifications": wanted}))
    headers = {**modern_headers("subscriptions/listen"), **bearer, "content-type": "application/json"}
    return Stream(surface, "POST", headers, body)


def updates(stream: Stream) -> list[str]:
    return [m["params"]["uri"] for m in stream.messages if m.get("method") == UPDATED]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_updates_and_list_changes_reach_the_listeners_that_asked_for_them(backend, monkeypatch):
    make, version = BACKENDS[backend]
    monkeypatch.setenv("TEST_GATEWAY_BACKEND_TOKEN", "backend-credential")
    with serve_in_thread(make(), free_port()) as url:
        surface = App("front").asgi(gateway_settings(f"{url}/mcp", version))
        await surface.lifecycle.start()
        streams: list[Stream] = []
        try:
            remote = await tools_listed(surface)
            async with asgi_client(surface) as http:
                tokens = await tokens_for(http, await register(http))
                bearer = {"authorization": f"Bearer {tokens['access_token']}"}
                # Modern listeners at Bastion: one for the readme and the tool list, one for prompts only.
                watching = listen(surface, bearer, {"toolsListChanged": True, "resourceSubscriptions": [README]})
                deaf = listen(surface, bearer, {"promptsListChanged": True})
                # A legacy session at Bastion subscribed to the readme, its GET stream open.
                http.headers.update(bearer)
                session = await open_session(http)
                in_session = {**ACCEPT, **bearer, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
                subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": README}}
                assert (await http.post("/mcp", headers=in_session, json=subscribe)).status_code == 200
                legacy = Stream(surface, "GET", {**in_session, "accept": "text/event-stream"})
                streams += [watching, deaf, legacy]
                await watching.has("notifications/subscriptions/acknowledged")

                async def subscribed_upstream() -> bool:  # Bastion asked the server about the readme alone
                    return remote.watch.subscribed == {README}

                await eventually(subscribed_upstream, "Bastion subscribed to the readme at the server")
                for uri in (OTHER, README):  # the other first: nobody asked for it
                    touched = await call(http, bearer, "notes_touch", {"uri": uri})
                    assert touched.json()["result"]["content"][0]["text"] == "touched"
                await watching.has(UPDATED)
                await legacy.has(UPDATED)
                assert updates(watching) == [README] and updates(legacy) == [README]
                assert updates(deaf) == []

                assert "notes_fresh" not in await listed_names(http, bearer)
                await call(http, bearer, "notes_grow", {})
                await watching.has(TOOLS_CHANGED)
                await legacy.has(TOOLS_CHANGED)
                assert "notes_fresh" in await listed_names(http, bearer)
                assert TOOLS_CHANGED not in deaf.methods()

                # Nobody wants the readme any more: Bastion stops asking the server about it.
                await watching.close()
                unsubscribe = {**subscribe, "id": 3, "method": "resources/unsubscribe"}
                assert (await http.post("/mcp", headers=in_session, json=unsubscribe)).status_code == 200

                async def unsubscribed_upstream() -> bool:
                    return remote.watch.subscribed == frozenset()

                await eventually(unsubscribed_upstream, "Bastion unsubscribed from the readme at the server")
        finally:
            for stream in streams:
                await stream.close()
            await surface.lifecycle.stop()


class Heard:
    """A broadcaster that records what it is asked to deliver."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []

    async def deliver(self, change: Any) -> None:
        self.delivered.append(change)

    def wanted_resources(self) -> set[str]:
        return {README, "front://doc"}


async def test_a_server_cannot_announce_updates_of_resources_that_are_not_its_own():
    config = GatewayServer(name="notes", url="http://127.0.0.1:9/mcp")
    heard = Heard()
    remote = RemoteServer(config, Shared(McpClient(Origin(config.url, timeout=1))), b"k" * 32, heard)  # type: ignore[arg-type]
    remote._resources, remote._uris = [{"uri": README, "name": "readme"}], frozenset({README})
    for uri in ("front://doc", "notes://not-listed", README):
        await remote._heard({"jsonrpc": "2.0", "method": UPDATED, "params": {"uri": uri}})
    assert [change.subject for change in heard.delivered] == [README]
    assert remote._wanted() == {README}  # the front's own resource is never asked of the server
