"""Two Bastion instances on one shared store (PostgreSQL, Redis), each with its own App object as in a real
deployment: a tool added on A, and `notify_resource_updated` called on A, reach the streams clients hold open on
B (a legacy session's GET stream and a 2026-07-28 subscriptions/listen stream), each exactly once, and only to the
streams that asked for them."""

from __future__ import annotations

import orjson

from bastion.compose import build
from bastion.settings import Settings
from tests.clients import asgi_client
from tests.mcp.conftest import ACCEPT, build_app, modern_body, modern_headers, open_session
from tests.services.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from tests.services.redis import redis_server  # noqa: F401 - fixtures
from tests.shared_stores import shared, store_url  # noqa: F401 - store_url is a fixture
from tests.sse import Stream

WATCHED, UNWATCHED, MARKER = "test://doc", "test://other", "test://marker"
TOOLS_CHANGED, UPDATED = "notifications/tools/list_changed", "notifications/resources/updated"


async def test_changes_made_on_one_instance_reach_streams_open_on_the_other_exactly_once(store_url, monkeypatch):  # noqa: F811
    backend, url = store_url
    settings = shared(backend, url, monkeypatch)  # no authentication: the bus is opened for the relay alone
    app_a, app_b = build_app(), build_app()  # the app code runs in each process
    a, b = build(app_a, settings), build(app_b, settings)
    await a.lifecycle.start()
    await b.lifecycle.start()
    streams: list[Stream] = []
    try:
        async with asgi_client(b) as via_b:
            session = await open_session(via_b)
            in_session = {**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
            subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": WATCHED}}
            assert (await via_b.post("/mcp", headers=in_session, json=subscribe)).status_code == 200
            legacy = Stream(b, "GET", {**in_session, "accept": "text/event-stream"})
            wanted = {"toolsListChanged": True, "resourceSubscriptions": [WATCHED]}
            listen = Stream(
                b,
                "POST",
                {**modern_headers("subscriptions/listen"), "content-type": "application/json"},
                orjson.dumps(modern_body("subscriptions/listen", {"notifications": wanted})),
            )
            # Prompts only: it must hear neither the tool list nor the resource.
            deaf = Stream(
                b,
                "POST",
                {**modern_headers("subscriptions/listen"), "content-type": "application/json"},
                orjson.dumps(modern_body("subscriptions/listen", {"notifications": {"promptsListChanged": True}})),
            )
            streams += [legacy, listen, deaf]
            await listen.has("notifications/subscriptions/acknowledged")
            await deaf.has("notifications/subscriptions/acknowledged")

            @app_a.tool(name="added_on_a")
            def added() -> str:
                return "new"

            await legacy.has(TOOLS_CHANGED)
            await listen.has(TOOLS_CHANGED)
            assert "added_on_a" not in app_b.registry.tools  # B's clients are told; B's own list is its app's

            await app_a.notify_resource_updated(UNWATCHED)
            await app_a.notify_resource_updated(WATCHED)
            await legacy.has(UPDATED)
            await listen.has(UPDATED)
            # The bus keeps order: whatever else was coming (an echo, a duplicate, the unwatched URI) came first.
            for stream in (legacy, listen):
                assert stream.methods().count(TOOLS_CHANGED) == 1
                updates = [message["params"]["uri"] for message in stream.messages if message["method"] == UPDATED]
                assert updates == [WATCHED]
            listened = [
                message
                for message in listen.messages
                if message["method"] != "notifications/subscriptions/acknowledged"
            ]
            assert all(message["params"]["_meta"] for message in listened)  # the subscription id rides along

            # A change on B goes the other way too; the prompts-only streams (on B and on A) hear that one alone.
            on_a = Stream(
                a,
                "POST",
                {**modern_headers("subscriptions/listen"), "content-type": "application/json"},
                orjson.dumps(
                    modern_body(
                        "subscriptions/listen",
                        {"notifications": {"promptsListChanged": True, "resourceSubscriptions": [MARKER]}},
                    )
                ),
            )
            streams.append(on_a)
            await on_a.has("notifications/subscriptions/acknowledged")
            await app_b.notify_list_changed("prompts")
            await on_a.has("notifications/prompts/list_changed")
            await deaf.has("notifications/prompts/list_changed")
            # Markers sent after it through each instance's relay, in order: a duplicate would have come first.
            await app_a.notify_resource_updated(WATCHED)
            await listen.has(UPDATED, 2)
            await app_b.notify_resource_updated(MARKER)
            await on_a.has(UPDATED)
            acknowledged_then_prompts = [
                "notifications/subscriptions/acknowledged",
                "notifications/prompts/list_changed",
            ]
            assert deaf.methods() == acknowledged_then_prompts
            assert on_a.methods() == [*acknowledged_then_prompts, UPDATED]
            assert legacy.status == listen.status == deaf.status == on_a.status == 200
    finally:
        for stream in streams:
            await stream.close()
        await a.lifecycle.stop()
        await b.lifecycle.stop()


def test_every_server_on_a_shared_store_relays_changes_and_others_do_not(monkeypatch, tmp_path):
    """Built (not started) for each kind of server: the relay's start-up step is there exactly when the store is
    shared and /mcp is served."""
    url = "postgresql://127.0.0.1:1/bastion"  # nothing is connected to by building
    on_postgres = shared("postgres", url, monkeypatch)
    authenticated = shared("postgres", url, monkeypatch, authorization_server={"enabled": True, "dev_login": True})
    on_sqlite = Settings.load(env={}, store={"path": str(tmp_path / "b.db")})
    with_auth_on_sqlite = Settings.load(
        env={}, store={"path": str(tmp_path / "b.db")}, authorization_server={"enabled": True, "dev_login": True}
    )

    def steps(settings: Settings) -> list[str]:
        return [name for name, _ in build(build_app(), settings).lifecycle.startup]

    assert steps(on_postgres) == ["bus", "store", "store", "notification relay"]  # the store: shared sessions
    assert steps(authenticated)[0] == "bus" and steps(authenticated)[-1] == "notification relay"
    assert steps(authenticated).count("bus") == 1  # one bus carries revocations and changes
    assert "notification relay" not in steps(on_sqlite) and "bus" not in steps(on_sqlite)
    assert "notification relay" not in steps(with_auth_on_sqlite)
