"""The audit trail: events appended in one hash chain by every writer, the first broken link named, events kept
while the store is down, copies in the sink, and the events a real OAuth session leaves."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bastion.ops import audit as audit_module
from bastion.ops.audit import BODY_FIELDS, AuditEvent, AuditTrail, link, sink_for, verify
from bastion.settings import SettingsError
from bastion.store import Commit, MemoryStore, SQLiteStore, StoreUnavailable, keys
from tests.clients import asgi_client, local_settings, store_of
from tests.clocks import Clock
from tests.mcp.conftest import build_app
from tests.oauth.conftest import authorize_params, code_exchange, query_of, register, settings, sign_in
from tests.waiting import eventually

DAY = 86400.0
ROOT = Path(__file__).resolve().parents[2]


def event(n: int, **more: object) -> AuditEvent:
    return AuditEvent("token.issued", subject=f"dev:user{n}", client_id="c_1", grant_id=f"g{n}", **more)  # type: ignore[arg-type]


async def chain(store) -> list[dict]:
    return [await store.get(name) for name in await store.keys(keys.audit_events("main"))]


async def test_events_are_appended_in_order_each_linked_to_the_one_before():
    store = MemoryStore()
    trail = AuditTrail(store, retention_seconds=DAY, clock=lambda: 1000.0)
    for n in range(5):
        trail.record(event(n, client_addr="203.0.113.9", request_id=f"r{n}"))
    await trail.flush()
    records = await chain(store)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["subject"] for r in records] == [f"dev:user{n}" for n in range(5)]
    assert records[0]["prev"] == audit_module.GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev"] == before["hash"]
    body = {k: records[2][k] for k in BODY_FIELDS}
    assert records[2]["hash"] == link(records[1]["hash"], body) and records[2]["time"] == 1000.0
    assert await store.get(keys.audit_tip("main")) == {"seq": 5, "hash": records[4]["hash"]}
    assert await verify(store) == audit_module.Verdict(True, 5, 1, 5)


@pytest.mark.parametrize(
    ("tamper", "broken_at", "reason"),
    [
        ("edit", 3, "its hash does not match its content"),
        ("remove", 3, "event 3 is missing"),
        ("truncate", 5, "the tip names another event"),
        ("rehash", 4, "its `prev` is not the previous event's hash"),
    ],
)
async def test_the_first_broken_link_is_named(tamper, broken_at, reason):
    store = MemoryStore()
    trail = AuditTrail(store, retention_seconds=DAY)
    for n in range(5):
        trail.record(event(n))
    await trail.flush()
    third = await store.get(keys.audit_event("main", 3))
    if tamper == "edit":  # someone makes event 3 say another user
        await store.commit(Commit().set(keys.audit_event("main", 3), {**third, "subject": "dev:someone-else"}))
    elif tamper == "remove":
        await store.commit(Commit(delete=[keys.audit_event("main", 3)]))
    elif tamper == "truncate":  # the newest event removed, the tip left alone
        await store.commit(Commit(delete=[keys.audit_event("main", 5)]))
    else:  # event 3 edited and its own hash recomputed: event 4 still names the old one
        edited = {**third, "subject": "dev:someone-else"}
        edited["hash"] = link(edited["prev"], {k: edited[k] for k in BODY_FIELDS})
        await store.commit(Commit().set(keys.audit_event("main", 3), edited))
    verdict = await verify(store)
    assert not verdict.whole and verdict.broken_at == broken_at and verdict.reason == reason


async def test_two_processes_appending_at_once_make_one_whole_chain(tmp_path):
    stores = [SQLiteStore(tmp_path / "bastion.db") for _ in range(2)]
    try:
        trails = [AuditTrail(s, retention_seconds=DAY) for s in stores]

        async def burst(trail: AuditTrail, who: int) -> None:
            for n in range(40):
                trail.record(event(n, details={"writer": who}))
                if n % 7 == 0:
                    await asyncio.sleep(0)  # let the other writer in

        await asyncio.gather(burst(trails[0], 0), burst(trails[1], 1))
        await asyncio.gather(*(t.flush() for t in trails))
        verdict = await verify(stores[0])
        assert verdict.whole and verdict.events == 80 and (verdict.first, verdict.last) == (1, 80)
        records = await chain(stores[0])
        for who in (0, 1):  # each writer's events in the order it recorded them
            mine = [r["subject"] for r in records if r["details"]["writer"] == who]
            assert mine == [f"dev:user{n}" for n in range(40)]
    finally:
        for s in stores:
            await s.close()


class Outage(MemoryStore):
    """A store whose commits fail while `down` (reads too): what a stopped database looks like to the trail."""

    down = False

    async def commit(self, change: Commit) -> bool:
        if self.down:
            raise StoreUnavailable("test: down")
        return await super().commit(change)

    async def get(self, key: str):
        if self.down:
            raise StoreUnavailable("test: down")
        return await super().get(key)


async def test_events_wait_while_the_store_is_down_and_are_appended_when_it_is_back(monkeypatch):
    monkeypatch.setattr(audit_module, "RETRY_SECONDS", 0.01)
    store = Outage()
    trail = AuditTrail(store, retention_seconds=DAY)
    store.down = True
    for n in range(3):
        trail.record(event(n))
    await asyncio.sleep(0.05)
    assert await MemoryStore.keys(store, "audit") == []  # nothing written, nothing lost
    store.down = False
    await trail.flush()
    assert [r["subject"] for r in await chain(store)] == ["dev:user0", "dev:user1", "dev:user2"]


async def test_the_sink_gets_each_stored_event_as_a_json_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    store = MemoryStore()
    trail = AuditTrail(store, retention_seconds=DAY, sink=sink_for(str(path)))
    for n in range(3):
        trail.record(event(n))
    await trail.flush()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert lines == await chain(store)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_expired_events_leave_a_chain_that_starts_later_and_is_still_whole():
    clock = Clock()
    store = MemoryStore(clock=clock)
    trail = AuditTrail(store, retention_seconds=100, clock=clock)
    trail.record(event(0))
    await trail.flush()
    clock.now += 60
    trail.record(event(1))
    trail.record(event(2))
    await trail.flush()
    clock.now += 50  # event 1 has expired; 2 and 3 have not
    assert await verify(store) == audit_module.Verdict(True, 2, 2, 3)


async def test_an_oauth_session_leaves_its_security_events_with_address_and_request_id():
    async with asgi_client(build_app(), settings()) as client:
        registered = await register(client)
        client_id = registered["client_id"]
        back = query_of(await sign_in(client, authorize_params(client_id)))
        issued = await client.post("/token", data=code_exchange(back["code"], client_id))
        replayed = await client.post("/token", data=code_exchange(back["code"], client_id))
        assert issued.status_code == 200 and replayed.status_code == 400
        store = store_of(client)

        async def all_of_them() -> bool:
            return len(await chain(store)) >= 9

        await eventually(all_of_them, "the session's nine audit events stored")
        records = await chain(store)
    summary = [(r["type"], r["outcome"], r["subject"], r["client_id"]) for r in records]
    assert summary == [
        ("client.registered", "success", None, client_id),
        ("consent.shown", "success", None, client_id),
        ("consent.approved", "success", None, client_id),
        ("signin.succeeded", "success", "dev:alice", client_id),
        ("code.issued", "success", "dev:alice", client_id),
        ("code.redeemed", "success", "dev:alice", client_id),
        ("token.issued", "success", "dev:alice", client_id),
        ("code.replayed", "failure", None, client_id),
        ("token.refused", "failure", None, client_id),
    ]
    by_type = {r["type"]: r for r in records}
    assert by_type["token.issued"]["request_id"] == issued.headers["x-request-id"]
    replay_ids = {by_type["code.replayed"]["request_id"], by_type["token.refused"]["request_id"]}
    assert replay_ids == {replayed.headers["x-request-id"]}
    assert all(r["client_addr"] == "127.0.0.1" and r["request_id"] for r in records)
    grant = by_type["code.issued"]["grant_id"]
    assert grant and by_type["token.issued"]["grant_id"] == by_type["code.replayed"]["grant_id"] == grant
    assert by_type["code.redeemed"]["grant_id"] == grant
    assert by_type["code.replayed"]["details"] == {"grant_revoked": True}
    assert by_type["signin.succeeded"]["details"] == {"method": "dev"}
    assert by_type["consent.approved"]["details"] == {"method": "dev"}
    assert by_type["token.refused"]["details"] == {"error": "invalid_grant", "grant_type": "authorization_code"}
    text = orjson.dumps(records).decode()
    assert back["code"] not in text and issued.json()["access_token"] not in text


async def test_bastion_audit_verify_says_whole_or_names_the_broken_event(tmp_path):
    store = SQLiteStore(tmp_path / "bastion.db")
    trail = AuditTrail(store, retention_seconds=DAY)
    for n in range(4):
        trail.record(event(n))
    await trail.flush()
    env = {**os.environ, "BASTION_STORE__PATH": str(tmp_path / "bastion.db")}

    def bastion(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bastion.cli", "audit", *args]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    whole = bastion("verify")
    assert (whole.returncode, whole.stdout) == (0, "audit chain whole: 4 events (events 1 to 4)\n")
    tail = bastion("tail", "-n", "2", "--json")
    assert [orjson.loads(line)["seq"] for line in tail.stdout.splitlines()] == [3, 4]
    second = await store.get(keys.audit_event("main", 2))
    await store.commit(Commit().set(keys.audit_event("main", 2), {**second, "outcome": "failure"}))
    await store.close()
    broken = bastion("verify")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert broken.stderr == "audit chain BROKEN at event 2: its hash does not match its content\n"


def test_a_sink_in_a_folder_that_cannot_be_written_stops_the_start(tmp_path):
    configured = local_settings(
        store={"backend": "memory"},
        authorization_server={"enabled": True, "dev_login": True},
        audit={"sink": str(tmp_path / "missing" / "audit.jsonl")},
    )
    with pytest.raises(SettingsError, match=r"^audit.sink: cannot write a file in the folder of .*missing"):
        build_app().asgi(configured)


async def test_events_anyone_can_cause_are_stored_once_a_period_and_the_rest_counted():
    clock = Clock()
    store = MemoryStore(clock=clock)
    trail = AuditTrail(store, retention_seconds=DAY, clock=clock)
    for _ in range(5):
        trail.record_sampled(AuditEvent("token.invalid", "failure"))
    clock.now += audit_module.SAMPLE_SECONDS
    trail.record_sampled(AuditEvent("token.invalid", "failure"))
    await trail.flush()
    assert [(r["type"], r["details"]) for r in await chain(store)] == [
        ("token.invalid", {"unrecorded": 0}),
        ("token.invalid", {"unrecorded": 4}),
    ]


async def test_a_flood_of_forged_tokens_leaves_one_event():
    async with asgi_client(build_app(), settings()) as client:
        answers = [
            await client.post("/mcp", headers={"authorization": f"Bearer forged-{n}"}, json={}) for n in range(20)
        ]
        assert {a.status_code for a in answers} == {401}
        store = store_of(client)

        async def stored() -> bool:
            return bool(await chain(store))

        await eventually(stored, "the first forged token recorded")
        await asyncio.sleep(0.05)  # the other 19 had every chance to be written too
        records = await chain(store)
    assert [(r["type"], r["outcome"], r["details"]) for r in records] == [
        ("token.invalid", "failure", {"unrecorded": 0})
    ]
    assert records[0]["request_id"] == answers[0].headers["x-request-id"]


async def test_revoking_an_access_token_and_a_refresh_token_are_events_naming_the_grant():
    from tests.oauth.conftest import tokens_for

    async with asgi_client(build_app(), settings()) as client:
        registered = await register(client)
        tokens = await tokens_for(client, registered)
        grant = tokens["access_token"].split(".")[0]
        for token in (tokens["access_token"], tokens["refresh_token"]):
            revoked = await client.post("/revoke", data={"client_id": registered["client_id"], "token": token})
            assert revoked.status_code == 200
        store = store_of(client)

        async def both() -> bool:
            return {"token.revoked", "grant.revoked"} <= {r["type"] for r in await chain(store)}

        await eventually(both, "both revocations in the trail")
        records = {r["type"]: r for r in await chain(store)}
    for kind in ("token.revoked", "grant.revoked"):
        assert records[kind]["grant_id"] == grant and records[kind]["subject"] == "dev:alice"
        assert records[kind]["client_id"] == registered["client_id"]


async def test_searching_finds_the_newest_matching_events_across_pages(monkeypatch):
    from bastion.ops.audit import Search, recent

    monkeypatch.setattr(audit_module, "SEARCH_PAGE", 7)  # several pages of the chain, without writing thousands
    store = MemoryStore()
    now = [1000.0]
    trail = AuditTrail(store, retention_seconds=DAY, clock=lambda: now[0])
    for n in range(40):
        now[0] = 1000.0 + n
        kind = "token.issued" if n % 3 else "grant.revoked"
        trail.record(AuditEvent(kind, subject=f"dev:user{n % 4}", client_id=f"c{n % 2}", grant_id=f"g{n}"))
    await trail.flush()
    everything = await recent(store, 100)
    assert [e["seq"] for e in everything] == list(range(1, 41))
    assert [e["seq"] for e in await recent(store, 3)] == [38, 39, 40]
    revoked = await recent(store, 100, Search(type="grant."))
    assert [e["grant_id"] for e in revoked] == [f"g{n}" for n in range(0, 40, 3)]
    mine = await recent(store, 2, Search(subject="dev:user1", client_id="c1"))
    assert [e["grant_id"] for e in mine] == ["g33", "g37"]  # the newest two, oldest first
    window = await recent(store, 100, Search(since=1010.0, until=1013.0))
    assert [e["grant_id"] for e in window] == ["g10", "g11", "g12"]
    assert await recent(store, 5, Search(type="nothing.")) == []
