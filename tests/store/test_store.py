"""Every backend keeps the same promises: TTLs, atomic commits, exactly-once consumption under races."""

import asyncio
import sqlite3

import pytest

from bastion.store import Commit, MemoryStore, SQLiteStore, Store, keys
from bastion.store import sqlite as sqlite_backend
from bastion.store.postgres import PostgresStore
from bastion.store.redis import RedisStore
from tests.clocks import Clock


@pytest.fixture
def clock():
    return Clock()


# Backends whose TTLs follow the test's clock. Redis keeps time itself (native TTLs): the tests that move a
# clock run on CLOCKED only, and tests/store/test_redis.py checks Redis's TTLs with short real ones.
CLOCKED = ["memory", "sqlite", "postgres"]
NETWORK = ["redis", "redis-cluster"]


async def _open(name, request, tmp_path, clock, *, fresh=True) -> Store:
    """A store of backend `name`; fresh=False: another connection to the same one (its data kept)."""
    if name == "memory":
        return MemoryStore(clock=clock)
    if name == "sqlite":
        return SQLiteStore(tmp_path / "bastion.db", now=clock)
    if name == "postgres":
        backend = PostgresStore(request.getfixturevalue("postgres_url"), now=clock)
        await backend.start()
        return backend
    service = request.getfixturevalue("redis_cluster" if name == "redis-cluster" else "redis_server")
    if fresh:
        service.flush()
    backend = RedisStore(service.url, cluster=name == "redis-cluster")
    await backend.start()
    return backend


@pytest.fixture(params=[*CLOCKED, *NETWORK])
async def store(request, tmp_path, clock):
    backend = await _open(request.param, request, tmp_path, clock)
    yield backend
    await backend.close()


@pytest.mark.parametrize("store", CLOCKED, indirect=True)
async def test_put_get_and_expiry(store, clock):
    assert await store.commit(Commit().set("a", {"x": 1}).set("b", {"y": [1, 2]}, ttl=60))
    assert await store.get("a") == {"x": 1}
    assert await store.get("b") == {"y": [1, 2]}
    assert await store.get("missing") is None
    clock.now += 59.5
    assert await store.get("b") == {"y": [1, 2]} and await store.keys("") == ["a", "b"]
    clock.now += 0.5  # a TTL ends at its last instant: expired from then on
    assert await store.get("b") is None and await store.get("a") == {"x": 1}
    assert await store.keys("") == ["a"]
    assert not await store.commit(Commit(consume=["b"]))  # expired things cannot be consumed either
    assert await store.take("b") is None
    assert await store.get("a") == {"x": 1}  # the failed consume changed nothing


@pytest.mark.parametrize("store", CLOCKED, indirect=True)
async def test_get_many_answers_each_key_in_order_and_skips_expired_ones(store, clock):
    grant, refresh = keys.grant("g1"), keys.refresh_token("g1", "h" * 64)
    assert await store.commit(Commit().set(grant, {"g": 1}).set(refresh, {"r": 2}, ttl=10).set("Grant:g1", {"G": 3}))
    assert await store.get_many([refresh, "missing", grant, refresh]) == [{"r": 2}, None, {"g": 1}, {"r": 2}]
    assert await store.get_many([]) == []
    assert await store.get_many(["grant:G1", "gr%", "\0"]) == [None, None, None]  # exact keys, no patterns
    clock.now += 10
    assert await store.get_many([grant, refresh]) == [{"g": 1}, None]


async def test_get_many_on_every_backend_reads_one_grant_and_keys_elsewhere(store):
    own = [keys.grant("g2"), keys.refresh_token("g2", "a" * 64), keys.access_token("g2", "b" * 64)]
    spread = [keys.client("c1"), keys.grant("g3"), *own]  # on a Cluster, several slots
    assert await store.commit(Commit().set(own[0], {"n": 0}).set(own[2], {"n": 2}).set(spread[0], {"c": 1}))
    assert await store.get_many(own) == [{"n": 0}, None, {"n": 2}]
    assert await store.get_many(spread) == [{"c": 1}, None, {"n": 0}, None, {"n": 2}]


async def test_sqlite_get_many_past_one_statements_bound_still_answers_every_key(tmp_path):
    store = SQLiteStore(tmp_path / "many.db")
    try:
        names = [f"k{i}" for i in range(sqlite_backend.MAX_VARIABLES + 5)]
        change = Commit()
        for i, name in enumerate(names[::2]):
            change.set(name, {"i": i})
        assert await store.commit(change)
        assert await store.get_many(names) == [{"i": i // 2} if i % 2 == 0 else None for i in range(len(names))]
    finally:
        await store.close()


@pytest.mark.parametrize("store", CLOCKED, indirect=True)
async def test_a_ttl_counts_from_the_commit_that_wrote_it(store, clock):
    await store.commit(Commit().set("state", {"n": 1}, ttl=60))
    clock.now += 50
    await store.commit(Commit().set("state", {"n": 2}, ttl=60))  # rewritten: a fresh minute from now
    clock.now += 50
    assert await store.get("state") == {"n": 2}
    clock.now += 10
    assert await store.get("state") is None


@pytest.mark.parametrize("store", CLOCKED, indirect=True)
async def test_an_unexpired_record_is_consumed_once_and_an_expired_one_never(store, clock):
    await store.commit(Commit().set("code:1", {"n": 1}, ttl=60).set("code:2", {"n": 2}, ttl=60))
    assert await store.take("code:1") == {"n": 1}
    clock.now += 60
    assert await store.take("code:2") is None
    assert await store.keys("code:") == []


async def test_sqlite_sweeps_out_what_its_clock_says_has_expired(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(sqlite_backend, "SWEEP_EVERY", 1)  # sweep on every commit
    path = tmp_path / "bastion.db"
    store = SQLiteStore(path, now=clock)
    try:
        await store.commit(Commit().set("old", {}, ttl=60).set("fresh", {}, ttl=600).set("kept", {}))
        await store.commit(Commit().set("other", {}))  # a sweep before the minute is up removes nothing
        assert _rows(path) == ["fresh", "kept", "old", "other"]
        clock.now += 60
        await store.commit(Commit().set("another", {}))
        assert _rows(path) == ["another", "fresh", "kept", "other"]
    finally:
        await store.close()


def _rows(path) -> list[str]:
    """Every key in the file, expired or not."""
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT key FROM records ORDER BY key")]


async def test_consume_is_all_or_nothing(store):
    await store.commit(Commit().set("code", {"n": 1}))
    failed = Commit(consume=["code", "absent"]).set("token", {"t": 1})
    assert not await store.commit(failed)
    assert await store.get("code") == {"n": 1} and await store.get("token") is None
    assert await store.commit(Commit(consume=["code"]).set("token", {"t": 1}))
    assert await store.get("code") is None and await store.get("token") == {"t": 1}


async def test_delete_prefix_is_literal(store):
    await store.commit(Commit().set("grant:a_1:x", {}).set("grant:a_1:y", {}).set("grant:ab1:z", {}).set("g%", {}))
    await store.commit(Commit(delete_prefix=["grant:a_1:"]))
    assert await store.keys("grant:") == ["grant:ab1:z"]
    await store.commit(Commit(delete_prefix=["g%"]))
    assert await store.get("g%") is None and await store.keys("grant:") == ["grant:ab1:z"]


# Keys that differ from one another only in ASCII case, in LIKE's and GLOB's wildcards and escape, beyond
# ASCII, at the last code point, or by extending another key.
PREFIX_KEYS = [
    "grant:a_1:x",
    "grant:A_1:x",
    "GRANT:a_1:x",
    "grant:ab1:x",
    "grant:a_1",
    "grant:a_10:x",
    "grant:a%1:x",
    "g%:1",
    "gx:1",
    "g_:1",
    "g\\:1",
    "g\\\\:1",
    "g*:1",
    "g[a]:1",
    "\u00e9:1",
    "\u00c9:1",
    "e:1",
    "z\U0010ffff:1",
    "z\U0010ffff\U0010ffff",
    "{",
    "k\ud7ffa",
    "k\ue000",
    "k\ud7fe",
]
PREFIXES = [
    "grant:a_1:",
    "grant:a_1",
    "grant:a",
    "grant:A",
    "GRANT:",
    "grant:a%",
    "g%",
    "g_",
    "g\\",
    "g*",
    "g[",
    "\u00e9",
    "\u00c9",
    "z\U0010ffff",
    "z",
    "k\ud7ff",
    "",
]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_prefixes_match_exactly(store, prefix):
    change = Commit()
    for key in PREFIX_KEYS:
        change.set(key, {"key": key})
    await store.commit(change)
    starting = sorted(k for k in PREFIX_KEYS if k.startswith(prefix))
    assert await store.keys(prefix) == starting
    await store.commit(Commit(delete_prefix=[prefix]))
    assert await store.keys("") == sorted(k for k in PREFIX_KEYS if not k.startswith(prefix))
    for key in PREFIX_KEYS:  # read back one by one too: nothing else was touched
        assert (await store.get(key) is None) == key.startswith(prefix)


async def test_exactly_one_concurrent_taker_wins(store):
    for round_ in range(5):
        key = f"once:{round_}"
        await store.commit(Commit().set(key, {"round": round_}))
        results = await asyncio.gather(*(store.take(key) for _ in range(50)))
        assert [r for r in results if r is not None] == [{"round": round_}]


async def test_two_connections_to_one_file_still_consume_once(tmp_path):
    # Two stores on one file stand for two processes sharing the embedded database.
    first, second = SQLiteStore(tmp_path / "shared.db"), SQLiteStore(tmp_path / "shared.db")
    try:
        for i in range(20):
            await first.commit(Commit().set(f"code:{i}", {"i": i}))
        wins = await asyncio.gather(*(s.take(f"code:{i}") for i in range(20) for s in (first, second)))
        # Each code taken by exactly one of the two, and with its own value (not a total that a double take
        # of one code and a lost other could also reach).
        pairs = [wins[i : i + 2] for i in range(0, 40, 2)]
        assert [[w for w in pair if w is not None] for pair in pairs] == [[{"i": i}] for i in range(20)]
    finally:
        await first.close()
        await second.close()


async def test_sqlite_survives_reopening(tmp_path):
    path = tmp_path / "durable.db"
    store = SQLiteStore(path)
    await store.commit(Commit().set("kept", {"v": 1}))
    await store.close()
    reopened = SQLiteStore(path)
    try:
        assert await reopened.get("kept") == {"v": 1}
    finally:
        await reopened.close()


# --- create: put if absent ---------------------------------------------------------------------------------------
async def test_create_writes_an_absent_key_and_refuses_a_live_one(store):
    assert await store.commit(Commit().add("lease:g:corp", {"owner": "first"}, ttl=30))
    assert await store.get("lease:g:corp") == {"owner": "first"}
    refused = Commit().add("lease:g:corp", {"owner": "second"}, ttl=30).set("other", {"v": 1})
    assert not await store.commit(refused)
    # Nothing of the refused commit happened: the record is the first's, and its other part was not written.
    assert await store.get("lease:g:corp") == {"owner": "first"} and await store.get("other") is None
    assert await store.commit(Commit().add("kept", {"v": 1}))  # no TTL: created for good
    assert not await store.commit(Commit().add("kept", {"v": 2}))
    assert await store.get("kept") == {"v": 1}


@pytest.mark.parametrize("store", CLOCKED, indirect=True)
async def test_create_replaces_an_expired_record(store, clock):
    assert await store.commit(Commit().add("lease:g:corp", {"owner": "crashed"}, ttl=30))
    clock.now += 29.9
    assert not await store.commit(Commit().add("lease:g:corp", {"owner": "next"}, ttl=30))
    clock.now += 0.1  # expired from its last instant on: the key counts as absent
    assert await store.commit(Commit().add("lease:g:corp", {"owner": "next"}, ttl=30))
    assert await store.get("lease:g:corp") == {"owner": "next"}
    clock.now += 29.9  # the new record's TTL counts from its own commit
    assert await store.get("lease:g:corp") == {"owner": "next"}


async def test_create_is_all_or_nothing_with_consume_and_put(store):
    await store.commit(Commit().set("code", {"n": 1}).set("taken", {"n": 2}))
    # One key to create is taken: the consume, the put and the other create do not happen either.
    blocked = Commit(consume=["code"]).set("token", {"t": 1}).add("free", {"f": 1}).add("taken", {"n": 3})
    assert not await store.commit(blocked)
    assert await store.get("code") == {"n": 1} and await store.get("token") is None
    assert await store.get("free") is None and await store.get("taken") == {"n": 2}
    # A key to consume is missing: the creates do not happen.
    assert not await store.commit(Commit(consume=["absent"]).add("free", {"f": 1}))
    assert await store.get("free") is None
    # Everything in place: all of it at once.
    assert await store.commit(Commit(consume=["code"], delete=["taken"]).set("token", {"t": 1}).add("free", {"f": 1}))
    assert await store.get("code") is None and await store.get("taken") is None
    assert await store.get("token") == {"t": 1} and await store.get("free") == {"f": 1}


async def test_a_key_to_create_cannot_also_be_written_otherwise_in_the_same_commit(store):
    await store.commit(Commit().set("k", {"v": 0}))
    for change in [
        Commit(consume=["k"]).add("k", {"v": 1}),
        Commit(delete=["k"]).add("k", {"v": 1}),
        Commit().set("k", {"v": 1}).add("k", {"v": 2}),
        Commit(delete_prefix=["k"]).add("k", {"v": 1}),
    ]:
        with pytest.raises(ValueError):
            await store.commit(change)
    assert await store.keys("") == ["k"] and await store.get("k") == {"v": 0}


async def test_exactly_one_concurrent_creator_wins(store):
    for round_ in range(5):
        key = f"lease:g{round_}:corp"
        attempts = [Commit().add(key, {"who": i}, ttl=30) for i in range(50)]
        results = await asyncio.gather(*(store.commit(change) for change in attempts))
        assert results.count(True) == 1
        assert await store.get(key) == {"who": results.index(True)}  # the winner's record, not a loser's


async def test_exactly_one_creator_wins_across_two_connections(store, request, tmp_path, clock):
    # A second store on the same backend (file, database or server) stands for a second instance.
    if request.node.callspec.params["store"] == "memory":
        pytest.skip("a memory store is one process's own")
    other = await _open(request.node.callspec.params["store"], request, tmp_path, clock, fresh=False)
    try:
        for round_ in range(5):
            key = f"lease:g{round_}:corp"
            attempts = [(s, Commit().add(key, {"who": i}, ttl=30)) for i in range(20) for s in (store, other)]
            results = await asyncio.gather(*(s.commit(change) for s, change in attempts))
            assert results.count(True) == 1
            assert await other.get(key) == {"who": results.index(True) // 2}
    finally:
        await other.close()


async def test_two_audit_trails_on_two_connections_make_one_whole_chain(store, request, tmp_path, clock):
    # The audit trail's append (ops/audit.py) on every backend: a consumed length, events and tip in one commit
    # (one hash slot on a Cluster), two writers racing.
    from bastion.ops.audit import AuditEvent, AuditTrail, verify

    backend = request.node.callspec.params["store"]
    # A memory store is one process's own: its two writers share it.
    other = store if backend == "memory" else await _open(backend, request, tmp_path, clock, fresh=False)
    try:
        trails = [AuditTrail(s, retention_seconds=3600) for s in (store, other)]
        for n in range(30):
            for who, trail in enumerate(trails):
                trail.record(AuditEvent("token.issued", subject=f"u{n}", details={"writer": who}))
            if n % 5 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*(t.flush() for t in trails))
        verdict = await verify(store)
        assert verdict.whole and verdict.events == 60 and (verdict.first, verdict.last) == (1, 60)
    finally:
        if other is not store:
            await other.close()
