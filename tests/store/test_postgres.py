"""The PostgreSQL store beyond the shared contract (tests/store/test_store.py runs that on it too): one winner
per record across connections and processes, exact prefixes whatever the database's collation, NUL in keys,
outages (StoreUnavailable, bounded, then recovery without a restart), migrations, the sweeper."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from bastion.store import Commit, StoreUnavailable
from bastion.store.postgres import MIGRATIONS, PostgresStore
from tests.clocks import Clock
from tests.services.postgres import PostgresCluster
from tests.store.racing import race
from tests.store.test_store import PREFIX_KEYS, PREFIXES
from tests.waiting import eventually, free_port

# A guard against a hang, not a timing claim: every wait in the store is bounded far below this.
HANG = 60


async def opened(url: str, **options) -> PostgresStore:
    store = PostgresStore(url, **options)
    await store.start()
    return store


def rows(cluster: PostgresCluster, url: str) -> list[str]:
    """Every key in the table, expired or not, read behind the store's back."""
    out = cluster.sql("SELECT key FROM bastion_records ORDER BY key", database=url.rsplit("/", 1)[1])
    return out.split()


async def test_two_stores_on_one_database_consume_once(postgres_url):
    first, second = await opened(postgres_url), await opened(postgres_url)
    try:
        change = Commit()
        for i in range(20):
            change.set(f"code:{i}", {"i": i})
        await first.commit(change)
        wins = await asyncio.gather(*(s.take(f"code:{i}") for i in range(20) for s in (first, second)))
        pairs = [wins[i : i + 2] for i in range(0, 40, 2)]
        assert [[w for w in pair if w is not None] for pair in pairs] == [[{"i": i}] for i in range(20)]
        assert await first.keys("") == []
    finally:
        await first.close()
        await second.close()


def test_four_processes_racing_for_the_same_codes_get_one_winner_each(postgres_url):
    keys, takers, processes = 10, 50, 4
    setup = asyncio.run(_seed(postgres_url, keys))
    assert setup == keys
    won = _race(postgres_url, keys, takers, processes)
    # Every code taken exactly once in all (counted: a double take is not hidden by a lost one), with its record.
    assert Counter(key for key, _ in won) == {f"code:{i}": 1 for i in range(keys)}
    assert sorted(won) == sorted([f"code:{i}", {"i": i}] for i in range(keys))


def test_four_processes_creating_the_same_keys_get_one_winner_each(postgres_url):
    keys, creators, processes = 10, 25, 4
    won = _race(postgres_url, keys, creators, processes, "create")
    assert Counter(key for key, _ in won) == {f"lease:{i}:p": 1 for i in range(keys)}
    stored = asyncio.run(_read(postgres_url, [key for key, _ in won]))
    assert stored == [record for _, record in won]  # each key holds its one winner's record


async def _read(url: str, names: list[str]) -> list[object]:
    store = await opened(url)
    try:
        found = [await store.get(name) for name in names]
        await store.commit(Commit(delete_prefix=["lease:"]))
        return found
    finally:
        await store.close()


def _race(postgres_url: str, keys: int, takers: int, processes: int, *mode: str) -> list:
    """What every racing process won (tests/store/postgres_taker.py), all started at once."""
    return race("tests.store.postgres_taker", [postgres_url, str(keys), str(takers), *mode], processes)


async def _seed(url: str, keys: int) -> int:
    store = await opened(url)
    try:
        change = Commit()
        for i in range(keys):
            change.set(f"code:{i}", {"i": i}, ttl=600)
        await store.commit(change)
        return len(await store.keys("code:"))
    finally:
        await store.close()


@pytest.fixture
def icu_url(postgres_cluster):
    """A database whose default collation is ICU's en-US: "a" < "B" < "b", unlike byte order."""
    name = f"icu{os.getpid()}"
    postgres_cluster.sql(f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'")
    yield postgres_cluster.url(name)
    postgres_cluster.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_prefixes_are_exact_in_a_database_with_a_linguistic_collation(postgres_cluster, icu_url):
    # The database sorts linguistically; the store's keys still compare byte by byte.
    assert postgres_cluster.sql("SELECT 'a' < 'B'", database=icu_url.rsplit("/", 1)[1]).strip() == "t"
    store = await opened(icu_url)
    try:
        for prefix in PREFIXES:
            change = Commit(delete_prefix=[""])
            for key in PREFIX_KEYS:
                change.set(key, {"key": key})
            await store.commit(change)
            assert await store.keys(prefix) == sorted(k for k in PREFIX_KEYS if k.startswith(prefix)), prefix
            await store.commit(Commit(delete_prefix=[prefix]))
            assert await store.keys("") == sorted(k for k in PREFIX_KEYS if not k.startswith(prefix)), prefix
    finally:
        await store.close()


async def test_case_and_wildcards_in_a_prefix_delete_touch_nothing_else(postgres_url):
    store = await opened(postgres_url)
    try:
        keys = ["access:Ab:1", "access:ab:1", "access:aB:1", "access:a_:1", "access:a%:1", "access:ab1:1"]
        change = Commit()
        for key in keys:
            change.set(key, {})
        await store.commit(change)
        await store.commit(Commit(delete_prefix=["access:ab:", "access:a_:"]))
        assert await store.keys("access:") == ["access:Ab:1", "access:a%:1", "access:aB:1", "access:ab1:1"]
    finally:
        await store.close()


async def test_a_key_with_nul_is_never_found_and_never_written(postgres_cluster, postgres_url):
    store = await opened(postgres_url)
    try:
        await store.commit(Commit().set("client:a", {"v": 1}))
        assert await store.get("client:a\0") is None
        assert await store.keys("client:a\0") == []
        assert not await store.commit(Commit(consume=["client:a\0"]).set("client:b", {}))
        assert await store.commit(Commit(delete=["client:a\0"], delete_prefix=["client:\0"]))
        with pytest.raises(ValueError, match="NUL"):
            await store.commit(Commit().set("client:\0x", {}))
        assert rows(postgres_cluster, postgres_url) == ["client:a"]
        # NUL inside a record is fine: values are stored as bytes, not jsonb
        assert await store.commit(Commit().set("client:c", {"name": "a\0b"}))
        assert await store.get("client:c") == {"name": "a\0b"}
    finally:
        await store.close()


async def test_a_store_that_cannot_reach_its_database_refuses_to_start():
    url = f"postgresql://bastion:hunter2@127.0.0.1:{free_port()}/bastion"
    store = PostgresStore(url, connect_timeout=2)
    with pytest.raises(StoreUnavailable) as refused:
        await asyncio.wait_for(store.start(), HANG)
    assert "hunter2" not in str(refused.value) and str(refused.value).startswith("postgres: ")
    with pytest.raises(StoreUnavailable, match="not started"):
        await store.get("a")
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get("a")


async def test_a_stopped_database_gives_store_unavailable_then_the_store_recovers(postgres_cluster, postgres_url):
    store = await opened(postgres_url, connect_timeout=2, statement_timeout=2)
    try:
        await store.commit(Commit().set("grant:g", {"v": 1}).set("code:g:1", {"c": 1}))
        postgres_cluster.stop()
        for call in (
            store.get("grant:g"),
            store.keys("code:"),
            store.commit(Commit(consume=["code:g:1"]).set("access:g:1", {"secret-value": 1})),
            store.take("code:g:1"),
        ):
            with pytest.raises(StoreUnavailable) as down:
                await asyncio.wait_for(call, HANG)
            assert "g:1" not in str(down.value) and "secret" not in str(down.value)
        postgres_cluster.start()

        async def back() -> bool:
            try:
                return await store.get("grant:g") == {"v": 1}
            except StoreUnavailable:
                return False

        await eventually(back, "the store serving again after the database restarted")
        # Nothing of the refused commit was applied; the code is still there to be used once.
        assert await store.keys("") == ["code:g:1", "grant:g"]
        assert await store.take("code:g:1") == {"c": 1}
        assert await store.take("code:g:1") is None
    finally:
        postgres_cluster.start()
        await store.close()


async def test_a_hung_database_times_out_instead_of_hanging(postgres_cluster, postgres_url):
    store = await opened(postgres_url, connect_timeout=1, statement_timeout=1)
    try:
        await store.commit(Commit().set("a", {}))
        postgres_cluster.pause()
        try:
            for call in (store.get("a"), store.commit(Commit().set("b", {}))):
                with pytest.raises(StoreUnavailable, match="postgres: "):
                    await asyncio.wait_for(call, HANG)
        finally:
            postgres_cluster.resume()

        async def back() -> bool:
            try:
                return await store.get("a") == {}
            except StoreUnavailable:
                return False

        await eventually(back, "the store serving again once the database answers")
        assert await store.get("b") is None  # the commit that timed out left nothing
    finally:
        await store.close()


async def test_migrations_run_once_when_stores_start_together(postgres_cluster, postgres_url):
    stores = [PostgresStore(postgres_url, pool_size=2) for _ in range(6)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        database = postgres_url.rsplit("/", 1)[1]
        assert postgres_cluster.sql("SELECT version FROM bastion_schema", database=database).split() == [
            str(len(MIGRATIONS))
        ]
        await stores[0].commit(Commit().set("kept", {"v": 1}))
        assert await stores[0].migrate() == len(MIGRATIONS)  # again: nothing to do, nothing lost
        assert await stores[5].get("kept") == {"v": 1}
    finally:
        for store in stores:
            await store.close()


async def test_a_database_at_the_first_schema_version_is_brought_up_to_date_with_its_records(
    postgres_cluster, postgres_url
):
    store = await opened(postgres_url)
    await store.commit(Commit().set("kept", {"v": 1}).set("code:1", {"c": 1}))
    await store.close()
    database = postgres_url.rsplit("/", 1)[1]
    # As the first release left it: the table, version 1, no commit function.
    postgres_cluster.sql("DROP FUNCTION bastion_commit; UPDATE bastion_schema SET version = 1", database=database)
    store = await opened(postgres_url)
    try:
        assert postgres_cluster.sql("SELECT version FROM bastion_schema", database=database).split() == [
            str(len(MIGRATIONS))
        ]
        assert await store.get("kept") == {"v": 1}
        assert await store.commit(Commit(consume=["code:1"]).set("token:1", {"t": 1}))
        assert not await store.commit(Commit(consume=["code:1"]).set("token:2", {"t": 2}))
        assert rows(postgres_cluster, postgres_url) == ["kept", "token:1"]
    finally:
        await store.close()


async def test_a_schema_newer_than_this_version_is_refused(postgres_cluster, postgres_url):
    store = await opened(postgres_url)
    await store.commit(Commit().set("kept", {"v": 1}))
    await store.close()
    database = postgres_url.rsplit("/", 1)[1]
    postgres_cluster.sql(f"UPDATE bastion_schema SET version = {len(MIGRATIONS) + 1}", database=database)
    newer = PostgresStore(postgres_url)
    with pytest.raises(StoreUnavailable, match="newer than this Bastion knows"):
        await newer.start()
    await newer.close()
    assert rows(postgres_cluster, postgres_url) == ["kept"]


async def test_the_sweeper_deletes_what_the_clock_says_has_expired(postgres_cluster, postgres_url, monkeypatch):
    clock = Clock()
    store = await opened(postgres_url, now=clock)
    try:
        await store.commit(Commit().set("old", {}, ttl=60).set("fresh", {}, ttl=600).set("kept", {}))
        assert await store.sweep() == 0
        assert rows(postgres_cluster, postgres_url) == ["fresh", "kept", "old"]
        clock.now += 60
        monkeypatch.setattr("bastion.store.postgres.SWEEP_BATCH", 1)  # in batches, until none is left
        change = Commit()
        for i in range(3):
            change.set(f"short:{i}", {}, ttl=1)
        await store.commit(change)
        clock.now += 1
        assert await store.sweep() == 4
        assert rows(postgres_cluster, postgres_url) == ["fresh", "kept"]
    finally:
        await store.close()


async def test_the_sweeper_runs_by_itself_and_stops_with_the_store(postgres_cluster, postgres_url):
    clock = Clock()
    store = await opened(postgres_url, now=clock, sweep_seconds=0.05)
    try:
        await store.commit(Commit().set("old", {}, ttl=60).set("kept", {}))
        clock.now += 60

        async def swept() -> bool:
            return rows(postgres_cluster, postgres_url) == ["kept"]

        await eventually(swept, "the expired row swept out")
    finally:
        await store.close()
    assert store._sweeper is None
