"""Two Bastion instances on one shared store (PostgreSQL, Redis): a token issued by one works on the other, and a
revocation made through one reaches the other's cache of verified tokens through the bus, not by expiry."""

from __future__ import annotations

import time
from typing import Any

from bastion.compose import build
from bastion.resource.bearer import CACHE_SECONDS
from tests.clients import asgi_client
from tests.mcp.conftest import build_app, modern_body, modern_headers
from tests.oauth.conftest import BASE, register, tokens_for
from tests.services.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from tests.services.redis import redis_server  # noqa: F401 - fixtures
from tests.shared_stores import shared, store_url  # noqa: F401 - store_url is a fixture
from tests.waiting import eventually


async def started(asgi: Any) -> None:
    await asgi.lifecycle.start()


async def test_a_revocation_through_one_instance_reaches_the_other_through_the_bus(store_url, monkeypatch):  # noqa: F811
    backend, url = store_url
    settings = shared(backend, url, monkeypatch, authorization_server={"enabled": True, "dev_login": True})
    a, b = build(build_app(), settings), build(build_app(), settings)
    await started(a)
    await started(b)
    try:
        async with asgi_client(a, base=BASE) as via_a, asgi_client(b, base=BASE) as via_b:
            client = await register(via_a)
            tokens = await tokens_for(via_a, client)  # issued by A
            bearer = {"authorization": f"Bearer {tokens['access_token']}", **modern_headers("tools/call", "add")}
            ping = modern_body("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
            assert (await via_b.post("/mcp", headers=bearer, json=ping)).status_code == 200  # B verifies it
            assert b.mcp._cache  # and remembers it
            revoked_at = time.monotonic()
            answer = await via_a.post(
                "/revoke", data={"client_id": client["client_id"], "token": tokens["refresh_token"]}
            )
            assert answer.status_code == 200

            async def refused_by_b() -> bool:
                return (await via_b.post("/mcp", headers=bearer, json=ping)).status_code == 401

            await eventually(refused_by_b, "the other instance refuses the revoked token")
            took = time.monotonic() - revoked_at
            print(f"{backend}: revocation seen by the other instance after {took * 1000:.0f} ms")
            # Not a timing bound: the proof is that B let go before its cache would have (10 s), so the bus told it.
            assert took < CACHE_SECONDS
    finally:
        await a.lifecycle.stop()
        await b.lifecycle.stop()
