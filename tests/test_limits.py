"""[limits]: requests per minute per caller and calls per minute per caller and tool, counted in the store, so that
two instances on one store hold one limit (a memory store shared in process; PostgreSQL and Redis for real). Over
the limit: a JSON-RPC error, HTTP 429 with Retry-After, and the tool does not run; a store that cannot count
answers 503 and waives nothing."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.compose import build
from bastion.settings import SettingsError
from bastion.store import Commit, MemoryStore, StoreUnavailable
from tests.clients import asgi_client
from tests.mcp.conftest import build_app, modern_body, modern_headers
from tests.oauth.conftest import BASE, register, settings, tokens_for
from tests.services.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from tests.services.redis import redis_server  # noqa: F401 - fixtures
from tests.shared_stores import shared, store_url  # noqa: F401 - store_url is a fixture


def limited(**limits: Any):
    return settings().model_copy(update={"limits": settings().limits.model_copy(update=limits)})


async def call(client, token: str, tool: str = "add"):
    return await client.post(
        "/mcp",
        headers={**modern_headers("tools/call", tool), "authorization": f"Bearer {token}"},
        json=modern_body("tools/call", {"name": tool, "arguments": {"a": 1, "b": 2} if tool == "add" else {}}),
    )


def assert_limited(answer, message: str) -> None:
    assert answer.status_code == 429
    retry = int(answer.headers["retry-after"])
    assert 1 <= retry <= 60
    assert answer.json()["error"] == {"code": -32029, "message": message, "data": {"retryAfterSeconds": retry}}


async def test_two_instances_on_one_store_hold_one_limit_per_caller():
    ran: list[str] = []
    store = MemoryStore()
    first, second = (build(build_app(ran), limited(requests_per_minute=3), store=store) for _ in range(2))
    async with asgi_client(first, base=BASE) as one, asgi_client(second, base=BASE) as two:
        alice = (await tokens_for(one, await register(one), username="alice"))["access_token"]
        bob = (await tokens_for(one, await register(one), username="bob"))["access_token"]
        answers = [await call(one if i % 2 else two, alice) for i in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert_limited(answers[3], "Too many requests: at most 3 a minute")
        assert ran == ["add"] * 3  # the refused call never ran
        assert (await call(two, bob)).status_code == 200  # another caller has a limit of its own


async def test_a_tools_limit_counts_only_that_tools_calls():
    ran: list[str] = []
    app = build(build_app(ran), limited(tools={"ad?": 2}), store=MemoryStore())
    async with asgi_client(app, base=BASE) as client:
        token = (await tokens_for(client, await register(client)))["access_token"]
        answers = [await call(client, token) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert_limited(answers[2], "Too many calls to add: at most 2 a minute")
        assert (await call(client, token, "fail_politely")).status_code == 200  # not limited
    assert ran == ["add", "add"]


class Down(MemoryStore):
    """A store whose counting of rate limits fails once `failing` is set (after the test has signed in)."""

    failing = False

    async def commit(self, change: Commit) -> bool:
        if self.failing and any(key.startswith("ratelimit:") for key in change.create):
            raise StoreUnavailable("test: down")
        return await super().commit(change)


async def test_a_store_that_cannot_count_waives_nothing():
    ran: list[str] = []
    store = Down()
    app = build(build_app(ran), limited(requests_per_minute=100), store=store)
    async with asgi_client(app, base=BASE) as client:
        token = (await tokens_for(client, await register(client)))["access_token"]
        store.failing = True
        answer = await call(client, token)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["error"] == {"code": -32030, "message": "Temporarily unavailable: try again shortly"}
    assert ran == []


def test_a_limit_below_one_is_refused_at_start_up():
    with pytest.raises(SettingsError, match=r"limits.tools: 'send_\*' = 0: a limit is at least 1 call a minute"):
        build(build_app(), limited(tools={"send_*": 0}))


async def test_two_instances_on_a_shared_store_hold_one_limit(store_url, monkeypatch):  # noqa: F811
    backend, url = store_url
    auth = {"enabled": True, "dev_login": True}
    configured = shared(backend, url, monkeypatch, authorization_server=auth, limits={"tools": {"add": 2}})
    ran: list[str] = []
    a, b = build(build_app(ran), configured), build(build_app(ran), configured)
    await a.lifecycle.start()
    await b.lifecycle.start()
    try:
        async with asgi_client(a, base=BASE) as via_a, asgi_client(b, base=BASE) as via_b:
            token = (await tokens_for(via_a, await register(via_a)))["access_token"]
            answers = [await call(via, token) for via in (via_a, via_b, via_a, via_b)]
        assert [x.status_code for x in answers] == [200, 200, 429, 429]
        assert ran == ["add", "add"]
    finally:
        await a.lifecycle.stop()
        await b.lifecycle.stop()
