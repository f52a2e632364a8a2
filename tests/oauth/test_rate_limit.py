"""The registration limit is counted in the store: instances on one store share one limit per address, each
window starts afresh, Retry-After says when, and a store that cannot count gives 503 (nothing registered)."""

from __future__ import annotations

import asyncio

import pytest

from bastion.compose import build
from bastion.ratelimit import RateLimiter
from bastion.security.crypto import token_hash
from bastion.store import Commit, MemoryStore, Store, keys
from bastion.store.errors import StoreUnavailable
from bastion.store.postgres import PostgresStore
from tests.clients import asgi_client, records
from tests.clocks import Clock
from tests.mcp.conftest import build_app
from tests.services.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures

from .conftest import settings

CLIENT = {"redirect_uris": ["https://a.example/cb"]}


class Counting(MemoryStore):
    """A memory store that counts its commits (store round trips)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.commits = 0

    async def commit(self, change: Commit) -> bool:
        self.commits += 1
        return await super().commit(change)


class Down(MemoryStore):
    async def commit(self, change: Commit) -> bool:
        raise StoreUnavailable("test: down")


async def test_two_instances_on_one_store_share_one_limit():
    store = MemoryStore()
    first, second = (build(build_app(), settings(registrations_per_minute=3), store=store) for _ in range(2))
    async with asgi_client(first) as one, asgi_client(second) as two:
        answers = [await (one if i % 2 else two).post("/register", json=CLIENT) for i in range(6)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429, 429]
        for refused in answers[3:]:
            assert refused.json()["error"] == "temporarily_unavailable"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert len(await records(store, keys.kind_prefix(keys.CLIENT))) == 3  # the refused registered nothing


async def test_a_window_counts_afresh_and_retry_after_is_the_rest_of_it():
    clock = Clock(6000.0 + 45.5)  # 45.5 s into a minute-long window
    store = MemoryStore(clock=clock)
    limiter = RateLimiter(store, 2, 60.0, clock=clock)
    assert [await limiter.allow("198.51.100.7") for _ in range(3)] == [True, True, False]
    assert limiter.retry_after() == 15
    assert await limiter.allow("198.51.100.8")  # another address has its own count
    hashed = token_hash("198.51.100.7")
    assert sorted(await store.keys(f"ratelimit:{hashed}:")) == [keys.rate_limit(hashed, 100, n) for n in (0, 1)]
    assert "198.51.100.7" not in str(await store.keys(""))  # the address only as a hash
    clock.now += 14.4
    assert not await limiter.allow("198.51.100.7") and limiter.retry_after() == 1
    clock.now += 0.1  # the next window: its own count, and the last one's counters have expired
    assert await limiter.allow("198.51.100.7")
    assert await store.keys(f"ratelimit:{hashed}:") == [keys.rate_limit(hashed, 101, 0)]


async def test_an_address_past_its_limit_costs_no_more_store_round_trips():
    clock = Clock()
    store = Counting(clock)
    limiter = RateLimiter(store, 3, 60.0, clock=clock)
    assert [await limiter.allow("a") for _ in range(3)] == [True, True, True]
    assert store.commits == 3  # one each under the limit
    assert not await limiter.allow("a")
    before = store.commits
    assert not any([await limiter.allow("a") for _ in range(100)])
    assert store.commits == before


async def test_concurrent_requests_on_two_instances_are_allowed_exactly_the_limit():
    store = MemoryStore()
    one, two = RateLimiter(store, 5, 60.0), RateLimiter(store, 5, 60.0)
    answers = await asyncio.gather(*(limiter.allow("a") for _ in range(20) for limiter in (one, two)))
    assert answers.count(True) == 5
    # An instance whose own hint is stale still finds the slots the other took.
    fresh = RateLimiter(store, 5, 60.0)
    assert not await fresh.allow("a")


async def test_the_hints_stay_bounded():
    limiter = RateLimiter(MemoryStore(), 1, 60.0, max_hints=10)
    for i in range(50):
        assert await limiter.allow(f"198.51.100.{i}")
    assert len(limiter._next) <= 10


def test_a_limit_needs_a_positive_limit_and_window():
    for limit, window in [(0, 60.0), (1, 0.0), (1, -1.0)]:
        with pytest.raises(ValueError):
            RateLimiter(MemoryStore(), limit, window)


async def test_a_store_that_cannot_count_gives_503_and_registers_nothing():
    store = Down()
    async with asgi_client(build(build_app(), settings(), store=store)) as client:
        response = await client.post("/register", json=CLIENT)
        assert response.status_code == 503 and response.json()["error"] == "temporarily_unavailable"
        assert "retry-after" in response.headers
        assert await store.keys("") == []


async def _on_postgres(url: str) -> Store:
    store = PostgresStore(url)
    await store.start()
    return store


async def test_two_instances_on_postgresql_share_one_limit(request):
    url = request.getfixturevalue("postgres_url")  # a PostgreSQL the tests start (tests/services)
    first, second = await _on_postgres(url), await _on_postgres(url)
    try:
        await first.commit(Commit(delete_prefix=["ratelimit:", "client:"]))
        apps = [build(build_app(), settings(registrations_per_minute=4), store=s) for s in (first, second)]
        async with asgi_client(apps[0]) as one, asgi_client(apps[1]) as two:
            answers = await asyncio.gather(*(c.post("/register", json=CLIENT) for _ in range(6) for c in (one, two)))
        assert sorted(a.status_code for a in answers) == [201] * 4 + [429] * 8
        assert len(await first.keys(keys.kind_prefix(keys.CLIENT))) == 4
    finally:
        await first.commit(Commit(delete_prefix=["ratelimit:", "client:"]))
        await first.close()
        await second.close()
