"""The bus across instances on PostgreSQL: two buses on one database stand for two instances."""

from __future__ import annotations

import asyncio

import pytest

from bastion.store import StoreUnavailable
from bastion.store.bus import GRANT_REVOKED
from bastion.store.bus.postgres import PostgresBus
from tests.waiting import eventually, free_port


class Heard:
    """What one subscriber was told, in order."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def has(self, event: dict):
        async def check() -> bool:
            return event in self.events

        return check


@pytest.fixture
async def pair(postgres_url):
    first, second = PostgresBus(postgres_url, max_backoff=0.2), PostgresBus(postgres_url, max_backoff=0.2)
    await first.start()
    await second.start()
    yield first, second
    await first.close()
    await second.close()


async def test_an_event_published_on_one_instance_reaches_the_other_once(pair):
    first, second = pair
    here, there, other_topic = Heard(), Heard(), Heard()
    first.subscribe(GRANT_REVOKED, here)
    second.subscribe(GRANT_REVOKED, there)
    second.subscribe("something.else", other_topic)
    assert first.healthy and second.healthy

    await first.publish(GRANT_REVOKED, {"grant": "g1"})
    assert here.events == [{"grant": "g1"}]  # told before publish returned
    await eventually(there.has({"grant": "g1"}), "the other instance told")

    # The echo of the first event reaches the first bus before any later notification: once the second
    # instance's answer has arrived, the first has seen (and skipped) its own echo.
    await second.publish(GRANT_REVOKED, {"grant": "g2"})
    await eventually(here.has({"grant": "g2"}), "the answer heard")
    assert here.events == [{"grant": "g1"}, {"grant": "g2"}]
    assert there.events == [{"grant": "g1"}, {"grant": "g2"}]
    assert other_topic.events == []


async def test_a_failing_subscriber_does_not_stop_the_others(pair):
    first, second = pair
    heard = Heard()

    def broken(event: dict) -> None:
        raise RuntimeError("subscriber bug")

    second.subscribe(GRANT_REVOKED, broken)
    second.subscribe(GRANT_REVOKED, heard)
    await first.publish(GRANT_REVOKED, {"grant": "g"})
    await eventually(heard.has({"grant": "g"}), "the second subscriber told")


async def test_notifications_not_from_a_bus_are_ignored(pair, postgres_cluster, postgres_url):
    first, second = pair
    heard = Heard()
    second.subscribe(GRANT_REVOKED, heard)
    database = postgres_url.rsplit("/", 1)[1]
    for payload in ("not json", "[1]", '{"s": "x", "t": "grant.revoked", "e": "not an object"}', '{"t": 1}'):
        postgres_cluster.sql(f"SELECT pg_notify('bastion_bus', '{payload}')", database=database)
    await first.publish(GRANT_REVOKED, {"grant": "after"})
    await eventually(heard.has({"grant": "after"}), "a real event after the junk")
    assert heard.events == [{"grant": "after"}] and second.healthy


async def test_an_event_too_large_for_notify_is_refused_before_anyone_is_told(pair):
    first, _ = pair
    heard = Heard()
    first.subscribe(GRANT_REVOKED, heard)
    with pytest.raises(ValueError, match="too large"):
        await first.publish(GRANT_REVOKED, {"grant": "g" * 9000})
    assert heard.events == []


async def test_the_bus_reconnects_after_the_database_restarts(pair, postgres_cluster):
    first, second = pair
    here, there = Heard(), Heard()
    first.subscribe(GRANT_REVOKED, here)
    second.subscribe(GRANT_REVOKED, there)
    try:
        postgres_cluster.stop()

        async def both_down() -> bool:
            return not first.healthy and not second.healthy

        await eventually(both_down, "both buses noticing the connection is gone")
        assert first.disconnected_since is not None
    finally:
        postgres_cluster.start()

    async def both_up() -> bool:
        return first.healthy and second.healthy

    await eventually(both_up, "both buses connected again")
    assert first.disconnected_since is None and second.disconnected_since is None
    await second.publish(GRANT_REVOKED, {"grant": "after"})
    await eventually(here.has({"grant": "after"}), "an event after the restart, one way")
    await first.publish(GRANT_REVOKED, {"grant": "back"})
    await eventually(there.has({"grant": "back"}), "and the other")
    assert here.events == [{"grant": "after"}, {"grant": "back"}]
    assert there.events == [{"grant": "after"}, {"grant": "back"}]


async def test_what_an_instance_publishes_while_cut_off_is_sent_once_it_is_back(pair, postgres_cluster, postgres_url):
    first, second = pair
    here, there = Heard(), Heard()
    first.subscribe(GRANT_REVOKED, here)
    second.subscribe(GRANT_REVOKED, there)
    database = postgres_url.rsplit("/", 1)[1]
    # Only the first instance loses its connection, and cannot make a new one until the database allows it.
    postgres_cluster.sql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
    try:
        postgres_cluster.sql(f"SELECT pg_terminate_backend({first._conn.get_server_pid()})")

        async def first_down() -> bool:
            return not first.healthy

        await eventually(first_down, "the first bus noticing its connection is gone")
        await first.publish(GRANT_REVOKED, {"grant": "while-down"})
        assert here.events == [{"grant": "while-down"}]  # told here at once
        assert second.healthy
    finally:
        postgres_cluster.sql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
    await eventually(there.has({"grant": "while-down"}), "the deferred event sent after reconnecting")
    assert first.healthy and here.events == [{"grant": "while-down"}] and there.events == [{"grant": "while-down"}]


async def test_a_bus_that_cannot_reach_its_database_refuses_to_start():
    bus = PostgresBus(f"postgresql://bastion:hunter2@127.0.0.1:{free_port()}/bastion", connect_timeout=2)
    with pytest.raises(StoreUnavailable) as refused:
        await asyncio.wait_for(bus.start(), 60)
    assert "hunter2" not in str(refused.value) and not bus.healthy
    await bus.close()
