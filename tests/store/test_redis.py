"""What the Redis store promises beyond the shared contract (tests/store/test_store.py runs that on Redis too):
native TTLs, exactly-once consumption across connections and processes, exact grant revocation through the
per-grant index, the Cluster's commits over several slots, durability with the append-only file, and 503s
(StoreUnavailable) rather than hangs when the server is gone, with recovery when it is back."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from bastion.store import Commit, keys
from bastion.store.errors import StoreUnavailable
from bastion.store.redis import RedisStore, grant_index, locate
from tests.services.redis import RedisCluster, RedisServer, running_cluster
from tests.store.racing import race
from tests.waiting import eventually, wait_until

KINDS = ("redis", "redis-cluster")


@pytest.fixture(params=KINDS)
async def service(request):
    service = request.getfixturevalue("redis_cluster" if request.param == "redis-cluster" else "redis_server")
    service.flush()
    return service


def _is_cluster(service) -> bool:
    return isinstance(service, RedisCluster)


@pytest.fixture
async def store(service):
    store = RedisStore(service.url, cluster=_is_cluster(service))
    await store.start()
    yield store
    await store.close()


@pytest.fixture
async def raw(service):
    """A plain client, to look at what the store wrote."""
    client = ClusterClient.from_url(service.url) if _is_cluster(service) else Redis.from_url(service.url)
    yield client
    await client.aclose()


# --- TTLs ---------------------------------------------------------------------------------------------------------
# Redis keeps time itself, so these use its own clock: TTLs are checked as Redis reports them, and expiry with a
# short real TTL, polled.


async def test_a_ttl_is_set_natively_to_the_millisecond_and_renewed_by_a_rewrite(store, raw):
    await store.commit(Commit().set("state", {"n": 1}, ttl=59.5).set("kept", {"n": 0}))
    remaining = await raw.pttl(locate("state").name)
    assert 58_000 < remaining <= 59_500
    assert await raw.pttl(locate("kept").name) == -1  # no TTL: never expires
    await store.commit(Commit().set("state", {"n": 2}, ttl=600))
    assert 599_000 < await raw.pttl(locate("state").name) <= 600_000
    assert await store.get("state") == {"n": 2}


async def test_an_expired_record_is_gone_for_reads_consumes_and_listings(store):
    await store.commit(Commit().set("code:1", {"n": 1}, ttl=0.2).set("code:2", {"n": 2}, ttl=600))

    async def expired() -> bool:
        return await store.get("code:1") is None

    await eventually(expired, "a 0.2 s record expiring")
    assert not await store.commit(Commit(consume=["code:1"]).set("token", {}))
    assert await store.get("token") is None  # the refused commit wrote nothing
    assert await store.keys("code:") == ["code:2"]
    assert await store.take("code:2") == {"n": 2}


async def test_a_record_written_with_no_time_left_is_not_written(store):
    await store.commit(Commit().set("state", {"n": 1}))
    assert await store.commit(Commit().set("state", {"n": 2}, ttl=0).set("other", {"n": 3}, ttl=-5))
    assert await store.get("state") is None and await store.get("other") is None
    assert await store.keys("") == []


# --- revocation through the index ---------------------------------------------------------------------------------


def _grant_records(grant: str) -> dict[str, dict]:
    return {
        keys.grant(grant): {"g": grant},
        keys.code(grant, "c1"): {"g": grant},
        keys.used_code(grant, "c0"): {"g": grant},
        keys.access_token(grant, "a1"): {"g": grant},
        keys.access_token(grant, "a2"): {"g": grant},
        keys.refresh_token(grant, "r1"): {"g": grant},
        keys.rotated_refresh(grant, "r0"): {"g": grant},
    }


async def test_revoking_a_grant_deletes_exactly_its_records(store, raw):
    grants = ["ab", "abc", "AB", "a", "b{x}", "}"]
    change = Commit().set("client:ab", {}).set("authz:ab", {})
    for grant in grants:
        for key, record in _grant_records(grant).items():
            change.set(key, record, ttl=600)
    await store.commit(change)
    for revoked in ("ab", "b{x}"):
        await store.commit(Commit(delete=[keys.grant(revoked)], delete_prefix=keys.issued_under(revoked)))
    survivors = [*sorted(k for g in ("abc", "AB", "a", "}") for k in _grant_records(g)), "authz:ab", "client:ab"]
    assert await store.keys("") == sorted(survivors)
    for key in survivors:
        assert await store.get(key) is not None
    assert await raw.exists(grant_index("ab").name) == 0  # nothing left of its index either
    # The grant record remains in the index of a grant whose tokens alone were revoked.
    await store.commit(Commit(delete_prefix=keys.issued_under("abc")))
    assert await store.keys("") == sorted([keys.grant("abc"), *(k for k in survivors if ":abc" not in k)])


async def test_a_revocation_finds_records_written_and_expired_in_any_order(store, raw):
    grant = "g1"
    await store.commit(Commit().set(keys.access_token(grant, "short"), {}, ttl=0.2))
    await store.commit(Commit().set(keys.refresh_token(grant, "long"), {}, ttl=600))

    async def expired() -> bool:
        return await store.get(keys.access_token(grant, "short")) is None

    await eventually(expired, "a 0.2 s token expiring")
    await store.commit(Commit().set(keys.access_token(grant, "new"), {}, ttl=600))
    await store.commit(Commit(delete=[keys.grant(grant)], delete_prefix=keys.issued_under(grant)))
    assert await store.keys("") == []
    assert await raw.exists(grant_index(grant).name) == 0


async def test_the_index_outlives_its_records_and_sheds_the_expired_ones(store, raw):
    grant = "busy"
    index = grant_index(grant).name
    await store.commit(Commit().set(keys.grant(grant), {}, ttl=600))
    assert 599_000 < await raw.pttl(index) <= 600_000  # as long as its longest-lived record
    for i in range(40):
        await store.commit(Commit().set(keys.access_token(grant, f"old{i}"), {}, ttl=0.2))

    async def expired() -> bool:
        return await store.keys(f"access:{grant}:") == []

    await eventually(expired, "forty 0.2 s tokens expiring")
    for i in range(30):  # past 64 members, the index drops those whose records are gone
        await store.commit(Commit().set(keys.access_token(grant, f"new{i}"), {}, ttl=600))
    assert await raw.scard(index) == 31
    await store.commit(Commit(delete=[keys.grant(grant)], delete_prefix=keys.issued_under(grant)))
    assert await store.keys("") == []


# --- exactly once, across connections and processes ---------------------------------------------------------------


async def test_two_connections_consume_each_record_once(service):
    cluster = _is_cluster(service)
    first, second = RedisStore(service.url, cluster=cluster), RedisStore(service.url, cluster=cluster)
    try:
        for i in range(20):
            await first.commit(Commit().set(f"code:g{i}:h", {"i": i}))
        wins = await asyncio.gather(*(s.take(f"code:g{i}:h") for i in range(20) for s in (first, second)))
        pairs = [wins[i : i + 2] for i in range(0, 40, 2)]
        assert [[w for w in pair if w is not None] for pair in pairs] == [[{"i": i}] for i in range(20)]
    finally:
        await first.close()
        await second.close()


async def test_processes_racing_for_the_same_records_each_win_a_record_once(service, store):
    records = 30
    for i in range(records):
        await store.commit(Commit().set(f"code:g{i}:h", {"i": i}))
    mode = "cluster" if _is_cluster(service) else "single"
    won = race("tests.store.redis_taker", [service.url, mode, str(records), "4"], 4)
    assert sorted(won, key=lambda w: w[1]["i"]) == [[f"code:g{i}:h", {"i": i}] for i in range(records)]
    assert await store.keys("code:") == []


# --- commits over several slots (Cluster) -------------------------------------------------------------------------


async def _owner(client: ClusterClient, cluster: RedisCluster, name: str) -> RedisServer:
    """The node serving the slot of Redis key `name`."""
    node = client.get_node_from_key(name)
    return next(server for server in cluster.nodes if server.port == int(node.port))


def _split(client: ClusterClient, cluster: RedisCluster) -> tuple[str, str]:
    """A transaction key and a grant id whose records are served by two different nodes."""
    transaction = keys.transaction("t1")
    home = client.get_node_from_key(locate(transaction).name)
    grant = next(f"g{i}" for i in range(1000) if client.get_node_from_key(grant_index(f"g{i}").name) != home)
    return transaction, grant


def _authorization(transaction: str, grant: str) -> Commit:
    """What completing an authorization commits: the transaction consumed, the grant and its code written."""
    return Commit(consume=[transaction]).set(keys.grant(grant), {"g": 1}, ttl=600).set(keys.code(grant, "c"), {}, 60)


async def test_a_commit_over_two_slots_consumes_then_writes(redis_cluster):
    redis_cluster.flush()
    store = RedisStore(redis_cluster.url, cluster=True)
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        await client.initialize()
        transaction, grant = _split(client, redis_cluster)
        assert not await store.commit(_authorization(transaction, grant))  # no transaction: nothing written
        assert await store.keys("") == []
        await store.commit(Commit().set(transaction, {"t": 1}, ttl=600))
        assert await store.commit(_authorization(transaction, grant))
        assert await store.keys("") == sorted([keys.code(grant, "c"), keys.grant(grant)])
        assert not await store.commit(_authorization(transaction, grant))  # never a second code
        assert await store.keys("") == sorted([keys.code(grant, "c"), keys.grant(grant)])
    finally:
        await client.aclose()
        await store.close()


async def test_a_consume_over_two_slots_puts_back_what_it_took_when_the_other_is_missing(redis_cluster):
    redis_cluster.flush()
    store = RedisStore(redis_cluster.url, cluster=True)
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        await client.initialize()
        present = ["authz:a", "authz:b", "authz:c", "authz:d"]
        await store.commit(Commit().set("authz:a", {"n": 1}, ttl=600).set("authz:b", {"n": 2}).set("authz:c", {}))
        await store.commit(Commit().set("authz:d", {"n": 4}, ttl=600))
        # Every order of slots: the missing key's slot may come first, last or between.
        for missing in ("authz:x", "authz:y", "authz:z", "authz:w"):
            assert not await store.commit(Commit(consume=[*present, missing]).set("token", {}))
        assert await store.keys("") == present
        assert await store.get("authz:b") == {"n": 2} and await store.get("authz:a") == {"n": 1}
        assert 599_000 - 60_000 < await client.pttl(locate("authz:a").name) <= 600_000  # its TTL came back too
        assert await client.pttl(locate("authz:b").name) == -1
        assert await store.commit(Commit(consume=present).set("token", {}))
        assert await store.keys("") == ["token"]
    finally:
        await client.aclose()
        await store.close()


async def test_a_create_over_several_slots_undoes_its_creates_when_a_later_slot_refuses(redis_cluster):
    redis_cluster.flush()
    store = RedisStore(redis_cluster.url, cluster=True)
    try:
        fresh = ["lease:a:p", "lease:b:p", "lease:c:p", "lease:d:p"]
        await store.commit(Commit().set("authz:a", {"n": 1}, ttl=600))
        await store.commit(Commit().set("someone", {"theirs": 1}, ttl=600))
        # Whichever slot the taken key has (first, last, between), nothing of the commit stays.
        for taken in ("someone", "lease:taken:p"):
            if taken != "someone":
                await store.commit(Commit().set(taken, {"theirs": 2}, ttl=600))
            change = Commit(consume=["authz:a"]).add(taken, {"mine": 1}, 30).set("token", {})
            for key in fresh:
                change.add(key, {"mine": 1}, 30)
            assert not await store.commit(change)
            assert sorted(await store.keys("")) == sorted(
                ["authz:a", "someone", *([taken] if taken != "someone" else [])]
            )
        assert await store.get("someone") == {"theirs": 1} and await store.get("lease:taken:p") == {"theirs": 2}
        change = Commit(consume=["authz:a"])
        for key in fresh:
            change.add(key, {"mine": 1}, 30)
        assert await store.commit(change)
        assert await store.keys("lease:") == sorted([*fresh, "lease:taken:p"]) and await store.get("authz:a") is None
    finally:
        await store.close()


async def test_a_master_lost_between_the_steps_leaves_the_transaction_spent_and_no_code():
    # A cluster of its own: a node is killed.
    with running_cluster() as cluster:
        store = RedisStore(cluster.url, cluster=True, timeout=1)
        client = ClusterClient.from_url(cluster.url)
        try:
            await client.initialize()
            transaction, grant = _split(client, cluster)
            await store.commit(Commit().set(transaction, {"t": 1}, ttl=600))
            grant_node = await _owner(client, cluster, grant_index(grant).name)
            grant_node.kill()
            with pytest.raises(StoreUnavailable) as raised:
                await store.commit(_authorization(transaction, grant))
            assert grant not in str(raised.value) and "authz" not in str(raised.value)
            grant_node.start()
            wait_until(cluster.ready, "the cluster whole again")

            async def back() -> bool:
                try:
                    return await store.keys("") == []
                except StoreUnavailable:
                    return False

            await eventually(back, "the store answering again, with neither transaction nor code")
            assert await store.get(transaction) is None and await store.get(keys.code(grant, "c")) is None
        finally:
            await client.aclose()
            await store.close()


# --- durability and faults -----------------------------------------------------------------------------------------


async def test_records_survive_a_restart_through_the_append_only_file(own_server):
    store = RedisStore(own_server.url)
    try:
        await store.commit(Commit().set(keys.grant("g"), {"g": 1}, ttl=600).set(keys.refresh_token("g", "r"), {}))
        await store.commit(Commit().set("authz:t", {"t": 1}, ttl=600))
        assert await store.take("authz:t") == {"t": 1}
        own_server.stop()
        own_server.start()

        async def back() -> bool:
            try:
                return await store.keys("") == [keys.grant("g"), keys.refresh_token("g", "r")]
            except StoreUnavailable:
                return False

        await eventually(back, "the records back after the restart, the consumed one still consumed")
        await store.commit(Commit(delete=[keys.grant("g")], delete_prefix=keys.issued_under("g")))  # index kept too
        assert await store.keys("") == []
    finally:
        await store.close()


async def test_with_appendfsync_always_a_crash_loses_no_acknowledged_commit(tmp_path):
    server = RedisServer(tmp_path / "redis", ("--appendfsync", "always"))
    server.root.mkdir()
    server.start()
    store = RedisStore(server.url)
    try:
        for i in range(20):
            await store.commit(Commit().set(f"code:g:{i}", {"i": i}, ttl=600))
        assert await store.take("code:g:0") == {"i": 0}
        server.kill()
        server.start()

        async def back() -> bool:
            try:
                return len(await store.keys("code:")) == 19
            except StoreUnavailable:
                return False

        await eventually(back, "19 records back after SIGKILL")
        assert await store.get("code:g:0") is None
    finally:
        await store.close()
        server.remove()


async def test_a_dead_server_is_store_unavailable_and_the_store_recovers_when_it_is_back(own_server):
    store = RedisStore(own_server.url, timeout=1)
    try:
        await store.commit(Commit().set("authz:secret-ish", {"v": "value-ish"}))
        own_server.kill()
        calls = [
            store.get("authz:secret-ish"),
            store.keys("authz:"),
            store.commit(Commit(consume=["authz:secret-ish"]).set("authz:other", {"v": "value-ish"})),
            store.take("authz:secret-ish"),
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable) as raised:
                await call
            assert "secret-ish" not in str(raised.value) and "value-ish" not in str(raised.value)
        own_server.start()

        async def back() -> bool:
            try:
                return await store.get("authz:secret-ish") == {"v": "value-ish"}
            except StoreUnavailable:
                return False

        await eventually(back, "the store answering once Redis is back")
        assert await store.keys("") == ["authz:secret-ish"]  # the refused commit applied nothing
    finally:
        await store.close()


async def test_a_stalled_server_is_store_unavailable_after_the_timeout(own_server):
    store = RedisStore(own_server.url, timeout=0.5)
    try:
        await store.commit(Commit().set("k", {}))
        assert own_server.process is not None
        os.kill(own_server.process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable):
                await store.get("k")
            with pytest.raises(StoreUnavailable):
                await store.commit(Commit().set("other", {}))
        finally:
            os.kill(own_server.process.pid, signal.SIGCONT)

        async def back() -> bool:
            try:
                return await store.get("k") == {}
            except StoreUnavailable:
                return False

        await eventually(back, "the store answering once Redis runs again")
    finally:
        await store.close()


async def test_start_fails_cleanly_when_nothing_listens(own_server):
    url = own_server.url
    own_server.stop()
    store = RedisStore(url, timeout=1)
    with pytest.raises(StoreUnavailable):
        await store.start()
    own_server.start()
    await store.start()  # once it is there
    assert await store.get("k") is None
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get("k")


async def test_start_tells_a_cluster_from_a_single_server(redis_server, redis_cluster):
    single, cluster = RedisStore(redis_server.url), RedisStore(redis_cluster.url)
    try:
        await single.start()
        await cluster.start()
        assert single.cluster is False and cluster.cluster is True
    finally:
        await single.close()
        await cluster.close()


async def test_a_record_that_is_not_bastions_is_unavailable_not_a_crash(store, raw):
    await raw.set(locate("authz:t").name, b"\xff not json")
    await raw.set(locate("authz:u").name, b"[1, 2]")
    for key in ("authz:t", "authz:u"):
        with pytest.raises(StoreUnavailable) as raised:
            await store.get(key)
        assert "not json" not in str(raised.value)


async def test_a_connection_closed_under_uvloop_is_the_store_unavailable(caplog):
    """What the driver lets through while the server goes away is the store unavailable (503), never a 500: uvloop's
    RuntimeError on a closed transport, and the driver's own slips (an AttributeError on a writer it dropped meanwhile,
    seen when the store went down under running instances), these logged with their traceback."""
    store = RedisStore("redis://127.0.0.1:1")
    with pytest.raises(StoreUnavailable, match="the connection was closed"):
        async with store._talking():
            raise RuntimeError(
                "unable to perform operation on <TCPTransport closed=True reading=False 0x1>; the handler is closed"
            )
    assert not caplog.records  # expected when the server goes: nothing to investigate
    with pytest.raises(StoreUnavailable, match="redis: AttributeError"):
        async with store._talking():
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
    [logged] = caplog.records
    assert logged.name == "bastion.store" and logged.exc_info is not None
    with pytest.raises(StoreUnavailable, match="already said"):  # the store's own refusals pass as they are
        async with store._talking():
            raise StoreUnavailable("already said")
