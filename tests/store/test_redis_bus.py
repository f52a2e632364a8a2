"""The Redis bus: what one instance publishes, every other instance hears, once; a subscriber of the instance
that published hears it once too, not a second time when it comes back from Redis; the bus says when it is not
listening, and listens again by itself once Redis is back."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from bastion.store.bus import GRANT_REVOKED
from bastion.store.bus.redis import CHANNEL, RedisBus, _node_url
from bastion.store.errors import StoreUnavailable
from tests.services.redis import RedisCluster
from tests.waiting import eventually


@pytest.fixture(params=["redis", "redis-cluster"])
def service(request):
    return request.getfixturevalue("redis_cluster" if request.param == "redis-cluster" else "redis_server")


async def _pair(url: str, cluster: bool | None = None) -> tuple[RedisBus, RedisBus]:
    first, second = RedisBus(url, cluster=cluster), RedisBus(url, cluster=cluster)
    await first.start()
    await second.start()
    return first, second


class Heard:
    def __init__(self, bus: RedisBus, topic: str = GRANT_REVOKED) -> None:
        self.events: list[dict] = []
        bus.subscribe(topic, self.events.append)

    async def until(self, count: int, what: str) -> None:
        async def enough() -> bool:
            return len(self.events) >= count

        await eventually(enough, what)


async def test_two_instances_hear_each_other_and_themselves_once(service):
    first, second = await _pair(service.url, cluster=isinstance(service, RedisCluster))
    try:
        assert first.healthy and second.healthy
        at_first, at_second = Heard(first), Heard(second)
        other_topic = Heard(second, "other.topic")
        await first.publish(GRANT_REVOKED, {"grant": "g1"})
        assert at_first.events == [{"grant": "g1"}]  # told at once, before Redis carried it anywhere
        await second.publish(GRANT_REVOKED, {"grant": "g2"})
        assert {"grant": "g2"} in at_second.events  # (the first instance's event may have arrived already)
        # Redis delivers one channel's messages in order: once the first instance heard the second's event, its
        # own earlier event has come back from Redis too, and was not handed to its subscribers again.
        await at_first.until(2, "the first instance hearing the second")
        await at_second.until(2, "the second instance hearing the first")
        await second.publish(GRANT_REVOKED, {"grant": "g3"})
        await at_first.until(3, "the first instance hearing the second again")
        assert at_first.events == [{"grant": "g1"}, {"grant": "g2"}, {"grant": "g3"}]
        # Likewise, once the second hears a last event of the first's, its own echoes have come and gone.
        await first.publish(GRANT_REVOKED, {"grant": "g4"})
        await at_second.until(4, "the second instance hearing the last event")
        assert sorted(at_second.events[:2], key=str) == [{"grant": "g1"}, {"grant": "g2"}]
        assert at_second.events[2:] == [{"grant": "g3"}, {"grant": "g4"}]
        assert at_first.events[3:] == [{"grant": "g4"}]
        assert other_topic.events == []
    finally:
        await first.close()
        await second.close()


async def test_a_failing_subscriber_does_not_stop_the_others(redis_server):
    first, second = await _pair(redis_server.url)
    try:

        def broken(event: dict) -> None:
            raise RuntimeError("subscriber bug")

        second.subscribe(GRANT_REVOKED, broken)
        heard = Heard(second)
        await first.publish(GRANT_REVOKED, {"grant": "g"})
        await heard.until(1, "the second subscriber told despite the first failing")
        assert second.healthy
    finally:
        await first.close()
        await second.close()


async def test_a_message_that_is_not_an_event_is_dropped_and_the_next_one_heard(service, caplog):
    cluster = isinstance(service, RedisCluster)
    first, second = await _pair(service.url, cluster=cluster)
    raw = ClusterClient.from_url(service.url) if cluster else Redis.from_url(service.url)
    try:
        heard = Heard(second)
        command = "SPUBLISH" if cluster else "PUBLISH"
        for junk in (b"not json", b"[1]", b'{"origin": "x", "topic": "grant.revoked", "event": "g"}', b"\xff"):
            await raw.execute_command(command, CHANNEL, junk)
        await first.publish(GRANT_REVOKED, {"grant": "g"})
        await heard.until(1, "the event after the junk")
        assert heard.events == [{"grant": "g"}] and second.healthy
        assert "not json" not in caplog.text
        assert caplog.text.count("not a Bastion event") == 8  # four, at each of the two instances
    finally:
        await raw.aclose()
        await first.close()
        await second.close()


async def test_the_bus_says_it_is_deaf_while_redis_is_gone_and_listens_again_when_it_is_back(own_server):
    first, second = await _pair(own_server.url)
    try:
        at_first, at_second = Heard(first), Heard(second)
        own_server.kill()

        async def deaf() -> bool:
            return not first.healthy and not second.healthy

        await eventually(deaf, "both instances noticing Redis is gone")
        assert first.disconnected_since is not None
        await first.publish(GRANT_REVOKED, {"grant": "during"})  # deferred, not an error
        assert at_first.events == [{"grant": "during"}]  # this instance's own caches were told at once
        own_server.start()

        async def listening() -> bool:
            return first.healthy and second.healthy

        await eventually(listening, "both instances subscribed again")
        assert first.disconnected_since is None
        await first.publish(GRANT_REVOKED, {"grant": "after"})

        async def heard_after() -> bool:
            return {"grant": "after"} in at_second.events

        await eventually(heard_after, "the event published after the restart")
        # The deferred event went out when the first reconnected: the second heard it if it was listening then.
        assert at_second.events in ([{"grant": "after"}], [{"grant": "during"}, {"grant": "after"}])
        assert at_first.events == [{"grant": "during"}, {"grant": "after"}]
    finally:
        await first.close()
        await second.close()
    assert not first.healthy


async def test_start_fails_cleanly_when_nothing_listens(own_server):
    url = own_server.url
    own_server.stop()
    bus = RedisBus(url, timeout=1)
    with pytest.raises(StoreUnavailable):
        await bus.start()
    assert not bus.healthy
    await bus.close()


def test_a_cluster_node_url_keeps_credentials_tls_and_options():
    assert _node_url("rediss://user:pw@a.example:7000/0?ssl_cert_reqs=none", "10.0.0.2", 7001) == (
        "rediss://user:pw@10.0.0.2:7001/0?ssl_cert_reqs=none"
    )
    assert _node_url("redis://a:1", "::1", 7002) == "redis://[::1]:7002"
