"""Legacy sessions served by two instances on one store, as behind a load balancer without affinity: whichever
instance a request of a session lands on serves it, with everything the session agreed or changed, and whatever a
call on one instance waits for (the client's answer, a cancellation, a resuming client) may arrive on the other.

Each case runs on two instances in this process sharing a memory store and an in-process bus (fast lane), and on
two instances built from settings on PostgreSQL and on Redis (services lane), each with its own App object as in
a real deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from bastion import App, Context
from bastion.cluster.relay import Relay
from bastion.cluster.sessions import StoreSessions
from bastion.compose import build
from bastion.mcp.http import StreamableHTTP
from bastion.mcp.session import SessionTable
from bastion.principal import SCOPE_KEY, Principal
from bastion.settings import Settings
from bastion.store import MemoryStore, Store, open_store
from bastion.store.bus import LocalBus
from tests.clients import asgi_client
from tests.mcp.conftest import ACCEPT, Name
from tests.messages import initialize
from tests.services.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from tests.services.redis import redis_server  # noqa: F401 - fixtures
from tests.shared_stores import STATE_SECRET, shared
from tests.sse import Stream
from tests.waiting import eventually

VERSION = "2025-11-25"
WATCHED, MARKER = "test://doc", "test://marker"
UPDATED = "notifications/resources/updated"
SESSION_KINDS = ("mcpsession:", "mcprev:", "mcpanswer:", "mcpstream:", "mcpevent:")


def build_app(ran: list[str]) -> App:
    app = App("shared-sessions", "1.0.0")

    @app.tool
    def add(a: int, b: int) -> int:
        ran.append("add")
        return a + b

    @app.tool
    async def chatty(ctx: Context) -> str:
        await ctx.debug("a debug line")
        await ctx.error("an error line")
        return "said"

    @app.tool
    async def ask(ctx: Context) -> str:
        ran.append("ask")
        answer = await ctx.elicit("Who are you?", Name)
        return f"hello {answer.data.name}" if answer.action == "accept" else answer.action

    @app.tool
    async def wait_forever(ctx: Context) -> str:
        ran.append("waiting")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ran.append("cancelled")
            raise
        return "never"

    @app.tool
    async def cut_short(ctx: Context) -> str:
        await ctx.info("before the cut")
        await ctx.close_stream()
        await ctx.info("after the cut")
        return "finished"

    @app.resource(WATCHED, mime_type="text/plain")
    def doc() -> str:
        return "the doc"

    return app


class AsSubject:
    """Stands in for the bearer gate: the principal named by the test's X-Subject header (none without it)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        subject = dict(scope.get("headers") or []).get(b"x-subject")
        if subject is not None:
            scope = {**scope, SCOPE_KEY: Principal(subject=subject.decode(), client_id="c")}
        await self.inner(scope, receive, send)


@dataclass
class Instance:
    asgi: Any
    app: App
    http: httpx.AsyncClient


@dataclass
class Pair:
    a: Instance
    b: Instance
    store: Store
    ran: list[str]

    async def records(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for prefix in SESSION_KINDS:
            for key in await self.store.keys(prefix):
                found[key] = await self.store.get(key)
        return found


@contextlib.asynccontextmanager
async def memory_pair() -> AsyncIterator[tuple[Any, Any, App, App, Store]]:
    store, bus = MemoryStore(), LocalBus()
    built = []
    for _ in range(2):
        app = build_app(RAN)
        shared_sessions = StoreSessions(store, bus, STATE_SECRET.encode(), idle_seconds=3600)
        relay = Relay(app.broadcaster, bus)
        await relay.start()
        table = SessionTable(100, 3600, app.broadcaster, shared_sessions)
        endpoint = StreamableHTTP(app.server(Settings.load(env={})), app.broadcaster, sessions=table)
        built.append((AsSubject(endpoint), app, relay, shared_sessions))
    try:
        yield built[0][0], built[1][0], built[0][1], built[1][1], store
    finally:
        for _, _, relay, shared_sessions in built:
            await relay.close()
            await shared_sessions.close()


@contextlib.asynccontextmanager
async def service_pair(backend: str, url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    settings = shared(backend, url, monkeypatch)
    app_a, app_b = build_app(RAN), build_app(RAN)
    a, b = build(app_a, settings), build(app_b, settings)
    inspect = open_store(backend, url=url)
    for part in (a.lifecycle, b.lifecycle, inspect):
        await part.start()
    try:
        yield AsSubject(a), AsSubject(b), app_a, app_b, inspect
    finally:
        await a.lifecycle.stop()
        await b.lifecycle.stop()
        await inspect.close()


RAN: list[str] = []


@pytest.fixture(params=["memory", "postgres", "redis"])
async def pair(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pair]:
    RAN.clear()
    if request.param == "memory":
        instances = memory_pair()
    elif request.param == "postgres":
        instances = service_pair("postgres", request.getfixturevalue("postgres_url"), monkeypatch)
    else:
        server = request.getfixturevalue("redis_server")
        server.flush()
        instances = service_pair("redis", server.url, monkeypatch)
    async with instances as (a, b, app_a, app_b, store), asgi_client(a) as http_a, asgi_client(b) as http_b:
        yield Pair(Instance(a, app_a, http_a), Instance(b, app_b, http_b), store, RAN)


# --- helpers ------------------------------------------------------------------------------------------------
async def open_session(via: Instance, subject: str | None = None, capabilities: dict[str, Any] | None = None) -> str:
    message = initialize(VERSION)
    message["params"]["capabilities"] = capabilities or {}
    headers = {**ACCEPT, **({"x-subject": subject} if subject else {})}
    response = await via.http.post("/mcp", headers=headers, json=message)
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await via.http.post("/mcp", headers=in_session(session, subject), json=done)).status_code == 202
    return session


def in_session(session: str, subject: str | None = None) -> dict[str, str]:
    headers = {**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": VERSION}
    return {**headers, "x-subject": subject} if subject else headers


def call(name: str, arguments: dict[str, Any] | None = None, msg_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": msg_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments or {}},
    }


def request(method: str, params: dict[str, Any], msg_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


def sse_messages(body: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[5:]) for line in body.splitlines() if line.startswith("data:") and line[5:].strip()]


def stream_post(via: Instance, session: str, message: dict[str, Any]) -> Stream:
    headers = {**in_session(session), "content-type": "application/json"}
    return Stream(via.asgi, "POST", headers, orjson.dumps(message))


# --- the cases ----------------------------------------------------------------------------------------------
async def test_a_session_opened_on_one_instance_is_served_by_the_other_and_ended_everywhere(pair):
    session = await open_session(pair.a)
    answer = await pair.b.http.post("/mcp", headers=in_session(session), json=call("add", {"a": 2, "b": 3}))
    assert answer.status_code == 200 and answer.json()["result"]["structuredContent"] == {"result": 5}
    assert pair.ran == ["add"]
    (key,) = [k for k in await pair.records() if k.startswith("mcpsession:")]
    assert session not in key  # stored under a digest, never the id
    assert (await pair.store.get(key))["v"] == VERSION

    ended = await pair.b.http.delete("/mcp", headers=in_session(session))
    assert ended.status_code == 204
    gone = await pair.b.http.post("/mcp", headers=in_session(session), json=call("add", {"a": 1, "b": 1}))
    assert gone.status_code == 404 and gone.json()["error"]["message"] == "Session not found"
    assert await pair.records() == {}

    # A's copy is dropped when the bus tells it (at once in process; a few milliseconds through a server).
    async def ended_on_a() -> bool:
        probe = await pair.a.http.post("/mcp", headers=in_session(session), json=request("ping", {}))
        return probe.status_code == 404

    await eventually(ended_on_a, "the session ended on A")
    assert pair.ran == ["add"] and await pair.records() == {}


async def test_a_session_belongs_to_its_subject_on_every_instance(pair):
    session = await open_session(pair.a, subject="dev:alice")
    for via in (pair.a, pair.b):
        stolen = await via.http.post(
            "/mcp", headers=in_session(session, "dev:mallory"), json=call("add", {"a": 1, "b": 1})
        )
        assert stolen.status_code == 404
        anonymous = await via.http.post("/mcp", headers=in_session(session), json=call("add", {"a": 1, "b": 1}))
        assert anonymous.status_code == 404
        deleted = await via.http.delete("/mcp", headers=in_session(session, "dev:mallory"))
        assert deleted.status_code == 404
    assert pair.ran == []
    served = await pair.b.http.post(
        "/mcp", headers=in_session(session, "dev:alice"), json=call("add", {"a": 1, "b": 1})
    )
    assert served.status_code == 200 and pair.ran == ["add"]


async def test_a_log_level_set_on_one_instance_holds_for_calls_on_the_other(pair):
    session = await open_session(pair.a)
    await pair.b.http.post("/mcp", headers=in_session(session), json=call("chatty"))  # a copy on B, read now
    level = request("logging/setLevel", {"level": "error"})
    assert (await pair.a.http.post("/mcp", headers=in_session(session), json=level)).status_code == 200

    # B's copy takes the new level when the bus tells it (at once in process; milliseconds through a server).
    async def only_errors_on_b() -> bool:
        said = await pair.b.http.post("/mcp", headers=in_session(session), json=call("chatty", msg_id=2))
        logged = [m["params"]["data"] for m in sse_messages(said.text) if m.get("method") == "notifications/message"]
        return logged == ["an error line"]

    await eventually(only_errors_on_b, "the log level on B")
    refused = request("logging/setLevel", {"level": "loud"})
    assert (await pair.b.http.post("/mcp", headers=in_session(session), json=refused)).json()["error"]
    (record,) = [v for k, v in (await pair.records()).items() if k.startswith("mcpsession:")]
    assert record["l"] == "error"  # the refused level wrote nothing


async def test_subscriptions_made_anywhere_at_once_are_all_kept_and_reach_the_stream_on_the_other(pair):
    session = await open_session(pair.a)
    uris = [f"test://doc/{n}" for n in range(10)]
    # Ten subscriptions at once, half through each instance: none may be lost to another's write.
    answers = await asyncio.gather(
        *(
            (pair.a if n % 2 else pair.b).http.post(
                "/mcp", headers=in_session(session), json=request("resources/subscribe", {"uri": uri}, n)
            )
            for n, uri in enumerate(uris)
        )
    )
    assert [a.status_code for a in answers] == [200] * 10
    (record,) = [v for k, v in (await pair.records()).items() if k.startswith("mcpsession:")]
    assert sorted(record["s"]) == sorted(uris)

    subscribe = request("resources/subscribe", {"uri": MARKER}, 20)
    assert (await pair.b.http.post("/mcp", headers=in_session(session), json=subscribe)).status_code == 200
    listening = Stream(pair.a.asgi, "GET", {**in_session(session), "accept": "text/event-stream"})
    try:
        await eventually(lambda: _true(listening.status == 200), "the GET stream on A")
        watch = request("resources/subscribe", {"uri": WATCHED}, 21)
        assert (await pair.b.http.post("/mcp", headers=in_session(session), json=watch)).status_code == 200
        await pair.b.app.notify_resource_updated(WATCHED)  # raised on B, the stream is on A
        await listening.has(UPDATED)
        unwatch = request("resources/unsubscribe", {"uri": WATCHED}, 22)
        assert (await pair.b.http.post("/mcp", headers=in_session(session), json=unwatch)).status_code == 200
        await pair.b.app.notify_resource_updated(WATCHED)
        await pair.b.app.notify_resource_updated(MARKER)  # in order after the unwatched one
        await listening.has(UPDATED, 2)
        assert [m["params"]["uri"] for m in listening.messages] == [WATCHED, MARKER]
    finally:
        await listening.close()


async def test_an_answer_posted_to_the_other_instance_reaches_the_call_that_asked(pair):
    session = await open_session(pair.a, capabilities={"elicitation": {"form": {}}})
    asking = stream_post(pair.a, session, call("ask", msg_id=5))
    try:
        await asking.has("elicitation/create")
        question = asking.messages[-1]
        answer = {"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept", "content": {"name": "Ada"}}}
        assert (await pair.b.http.post("/mcp", headers=in_session(session), json=answer)).status_code == 202
        await asyncio.wait_for(asking.ended.wait(), 30)
        assert asking.messages[-1]["result"]["content"][0]["text"] == "hello Ada"
        assert pair.ran == ["ask"]
        assert not [k for k in await pair.records() if k.startswith("mcpanswer:")]  # taken, once
    finally:
        await asking.close()


async def test_an_answer_not_asked_for_in_this_session_is_not_stored(pair):
    first = await open_session(pair.a, capabilities={"elicitation": {"form": {}}})
    second = await open_session(pair.a, capabilities={"elicitation": {"form": {}}})
    asking = stream_post(pair.a, first, call("ask", msg_id=5))
    try:
        await asking.has("elicitation/create")
        real = asking.messages[-1]["id"]
        before = await pair.records()
        origin = real.split("-")[1]
        for forged in (
            real,  # a question of the first session, answered in the second
            f"bastion-{origin}-1-{'0' * 32}",  # a guessed MAC
            f"bastion-{'f' * 16}-1-{real.split('-')[3]}",  # another instance named with a real MAC
            "bastion-1",
            7,
            "x" * 5000,
        ):
            answer = {"jsonrpc": "2.0", "id": forged, "result": {"action": "accept", "content": {"name": "Eve"}}}
            via = pair.b.http
            assert (await via.post("/mcp", headers=in_session(second), json=answer)).status_code == 202
        after = await pair.records()
        assert {k: v for k, v in after.items() if not k.startswith("mcprev:")} == {
            k: v for k, v in before.items() if not k.startswith("mcprev:")
        }
        assert not asking.ended.is_set()
        answer = {"jsonrpc": "2.0", "id": real, "result": {"action": "accept", "content": {"name": "Ada"}}}
        assert (await pair.b.http.post("/mcp", headers=in_session(first), json=answer)).status_code == 202
        await asyncio.wait_for(asking.ended.wait(), 30)
        assert asking.messages[-1]["result"]["content"][0]["text"] == "hello Ada"
    finally:
        await asking.close()


async def test_a_cancellation_sent_to_the_other_instance_stops_the_call(pair):
    session = await open_session(pair.a)
    waiting = stream_post(pair.a, session, call("wait_forever", msg_id=9))
    try:
        await eventually(lambda: _true("waiting" in pair.ran), "the call started on A")
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
        assert (await pair.b.http.post("/mcp", headers=in_session(session), json=cancel)).status_code == 202
        await eventually(lambda: _true("cancelled" in pair.ran), "the call on A cancelled")
    finally:
        await waiting.close()


async def test_a_stream_cut_on_one_instance_is_resumed_on_the_other(pair):
    session = await open_session(pair.a)
    cut = stream_post(pair.a, session, call("cut_short", msg_id=3))
    try:
        await asyncio.wait_for(cut.ended.wait(), 30)
        assert [m["params"]["data"] for m in cut.messages] == ["before the cut"]
        resume = {**in_session(session), "accept": "text/event-stream", "last-event-id": cut.ids[-1]}
        resumed = Stream(pair.b.asgi, "GET", resume)
        try:
            await asyncio.wait_for(resumed.ended.wait(), 30)
            assert resumed.status == 200
            assert resumed.messages[0]["params"]["data"] == "after the cut"
            assert resumed.messages[-1]["result"]["content"][0]["text"] == "finished"
            assert len(resumed.messages) == 2
        finally:
            await resumed.close()
        # A stream this session never had is not found, on either instance.
        unknown = {**resume, "last-event-id": "nosuchstream.1"}
        assert (await pair.b.http.get("/mcp", headers=unknown)).status_code == 404
        other = await open_session(pair.b)
        theirs = {**in_session(other), "accept": "text/event-stream", "last-event-id": cut.ids[-1]}
        assert (await pair.b.http.get("/mcp", headers=theirs)).status_code == 404
    finally:
        await cut.close()


async def _true(value: bool) -> bool:
    return value


@pytest.mark.services
async def test_while_the_store_is_down_sessions_answer_503_and_recover_by_themselves(monkeypatch):
    from tests.services import redis

    with redis.running_server() as server:  # its own: killed and started again (append-only file on)
        async with service_pair("redis", server.url, monkeypatch) as (a, b, app_a, _, _):
            RAN.clear()
            async with asgi_client(a) as http_a, asgi_client(b) as http_b:
                session = await open_session(Instance(a, app_a, http_a))
                assert (
                    await http_b.post("/mcp", headers=in_session(session), json=call("add", {"a": 1, "b": 2}))
                ).status_code == 200
                server.kill()

                # B stops trusting its copy as soon as its bus connection drops; then it cannot read the record.
                async def refused() -> bool:
                    return (
                        await http_b.post("/mcp", headers=in_session(session), json=request("ping", {}))
                    ).status_code == 503

                await eventually(refused, "B refusing the session while Redis is down")
                ran = list(RAN)
                answer = await http_b.post("/mcp", headers=in_session(session), json=call("add", {"a": 1, "b": 1}, 4))
                assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
                assert answer.json()["id"] == 4 and answer.json()["error"]["code"] == -32600
                opened = await http_a.post("/mcp", headers=ACCEPT, json=initialize(VERSION))
                assert opened.status_code == 503 and "mcp-session-id" not in opened.headers
                deleted = await http_a.delete("/mcp", headers=in_session(session))
                assert deleted.status_code == 503
                assert ran == RAN  # no tool ran

                server.start()

                async def served() -> bool:
                    again = await http_b.post(
                        "/mcp", headers=in_session(session), json=call("add", {"a": 2, "b": 2}, 5)
                    )
                    return again.status_code == 200

                await eventually(served, "the session served again once Redis is back")
                assert RAN[-1] == "add"
