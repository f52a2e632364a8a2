"""One upstream renewal at a time per grant across instances: a lease in the store (lease:<grant>:<provider>).

Two Grants objects on one store stand for two instances (on SQLite, two connections to one file)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bastion.oauth.grants import LEASE_POLL_SECONDS, LEASE_SECONDS, Grants
from bastion.principal import UpstreamError
from bastion.store import Commit, MemoryStore, SQLiteStore, Store, keys
from tests.clocks import Clock
from tests.waiting import eventually

from .test_grants import RESOURCE, Upstream, grant_of, new_code, redeem


class Instances:
    """Two instances' Grants on one store, sharing one clock; `sleeps` counts the pauses of waiting callers."""

    def __init__(self, stores: list[Store], clock: Clock, refresh, *, advance: bool) -> None:
        self.clock, self.sleeps, self.stores = clock, 0, stores

        async def sleep(seconds: float) -> None:
            assert seconds >= 0.05  # never a busy loop
            self.sleeps += 1
            if advance:
                clock.now += seconds
            await asyncio.sleep(0)

        self.all = [Grants(store, upstream=Upstream(refresh), clock=clock, sleep=sleep) for store in stores]


@pytest.fixture(params=["memory", "sqlite"])
async def stores(request, tmp_path):
    clock = Clock(time.time())  # principals compare upstream expiries with the real time
    if request.param == "memory":
        shared = MemoryStore(clock=clock)
        opened: list[Store] = [shared, shared]
    else:
        opened = [SQLiteStore(tmp_path / "shared.db", now=clock) for _ in range(2)]
    yield opened, clock
    for store in opened:
        await store.close()


async def _principals(instances: Instances):
    """A grant whose token at "corp" has expired, and its principal as each instance verifies it."""
    expired = {"access_token": "stale", "refresh_token": "r1", "expires_at": instances.clock() - 5, "scopes": ["read"]}
    first = instances.all[0]
    tokens = await redeem(first, await new_code(first, props={"upstream": {"corp": expired}}))
    principals = [await grants.verify(tokens.access_token, RESOURCE) for grants in instances.all]
    return grant_of(tokens.access_token), principals, tokens.access_token


async def test_ten_renewals_on_two_instances_call_the_provider_once(stores):
    opened, clock = stores
    calls = []

    async def renew(provider, token):
        calls.append(token["refresh_token"])
        # Held until the other instance's callers have looked at the grant while this one renews (a bounded
        # number of turns of the loop: were renewals not shared, nobody would wait, and calls shows it).
        for _ in range(10_000):
            if instances.sleeps >= 3:
                break
            await asyncio.sleep(0)
        return {**token, "access_token": "fresh", "expires_at": clock() + 3600}

    instances = Instances(opened, clock, renew, advance=False)
    grant_id, principals, access_token = await _principals(instances)
    callers = [principals[i % 2].fresh_upstream_token("corp", ["read"]) for i in range(10)]
    assert await asyncio.gather(*callers) == ["fresh"] * 10
    assert calls == ["r1"]
    assert await opened[0].get(keys.upstream_lease(grant_id, "corp")) is None  # let go at the end
    # Sealed back into the grant: a later verification on either instance sees the renewed token.
    for grants in instances.all:
        again = await grants.verify(access_token, RESOURCE)
        assert again is not None and again.upstream_token("corp") == "fresh"


async def test_a_lease_left_by_a_crashed_instance_expires_and_the_next_caller_renews(stores):
    opened, clock = stores
    calls = []

    async def renew(provider, token):
        calls.append(clock())
        return {**token, "access_token": "fresh", "expires_at": clock() + 3600}

    instances = Instances(opened, clock, renew, advance=True)
    grant_id, principals, _ = await _principals(instances)
    lease = keys.upstream_lease(grant_id, "corp")
    crashed_at = clock()
    assert await opened[1].commit(Commit().add(lease, {}, LEASE_SECONDS))  # taken, then its instance died
    assert await principals[0].fresh_upstream_token("corp", ["read"]) == "fresh"
    # Renewed once, only after the crashed instance's lease ran out, and without waiting much longer.
    assert len(calls) == 1 and crashed_at + LEASE_SECONDS <= calls[0] <= crashed_at + LEASE_SECONDS + 0.5
    assert await opened[0].get(lease) is None


async def test_a_renewal_that_fails_lets_the_lease_go(stores):
    opened, clock = stores
    outcomes = iter([RuntimeError("provider down"), None])

    async def renew(provider, token):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    instances = Instances(opened, clock, renew, advance=True)
    grant_id, principals, _ = await _principals(instances)
    lease = keys.upstream_lease(grant_id, "corp")
    with pytest.raises(RuntimeError):
        await principals[0].fresh_upstream_token("corp", ["read"])
    assert await opened[0].get(lease) is None  # an error does not leave the others waiting 30 s
    with pytest.raises(UpstreamError):  # refused by the provider: a new sign-in, and the lease let go again
        await principals[1].fresh_upstream_token("corp", ["read"])
    assert await opened[0].get(lease) is None and instances.sleeps == 0


async def test_a_waiter_returns_what_it_finds_when_the_holder_keeps_the_lease(stores):
    opened, clock = stores
    calls = []

    async def renew(provider, token):
        calls.append(1)
        return {**token, "access_token": "fresh", "expires_at": clock() + 3600}

    instances = Instances(opened, clock, renew, advance=True)
    grant_id, principals, _ = await _principals(instances)
    lease = keys.upstream_lease(grant_id, "corp")

    async def holder_keeps_renewing_its_lease() -> None:
        # Another instance stuck in its renewal that rewrites its lease (as no Bastion does): the waiter is bounded.
        while True:
            await opened[1].commit(Commit().set(lease, {}, LEASE_SECONDS))
            await asyncio.sleep(0)

    keeper = asyncio.create_task(holder_keeps_renewing_its_lease())
    try:
        await eventually(lambda: _exists(opened[0], lease), "the other instance holding the lease")
        started = clock()
        with pytest.raises(UpstreamError, match="expired"):  # the stale token it found: no renewal of its own
            await principals[0].fresh_upstream_token("corp", ["read"])
    finally:
        keeper.cancel()
    assert calls == []
    assert LEASE_SECONDS <= clock() - started <= LEASE_SECONDS + 3 * LEASE_POLL_SECONDS
    assert instances.sleeps <= (LEASE_SECONDS + 3 * LEASE_POLL_SECONDS) / LEASE_POLL_SECONDS


async def _exists(store: Store, key: str) -> bool:
    return await store.get(key) is not None
