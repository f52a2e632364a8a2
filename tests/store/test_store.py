"""Every backend keeps the same promises: TTLs, atomic commits, exactly-once consumption under races."""

import asyncio
import time

import pytest

from bastion.store import Commit, MemoryStore, SQLiteStore, Store


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "bastion.db")
    yield backend
    await backend.close()


async def test_put_get_and_expiry(store, monkeypatch):
    assert await store.commit(Commit().set("a", {"x": 1}).set("b", {"y": [1, 2]}, ttl=60))
    assert await store.get("a") == {"x": 1}
    assert await store.get("b") == {"y": [1, 2]}
    assert await store.get("missing") is None
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert await store.get("b") is None and await store.get("a") == {"x": 1}
    assert not await store.commit(Commit(consume=["b"]))  # expired things cannot be consumed either


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
