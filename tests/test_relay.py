"""The relay between two instances' Broadcasters, over a fake network of buses that behaves as the real ones do: a
publish tells the publisher's own subscribers at once and every other bus's subscribers.

What is checked: a change raised on one instance reaches the other's listeners exactly once and its own listeners
exactly once, is published exactly once and never echoed back; what a peer sends that is not a change is dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bastion.cluster.relay import TOPIC, URI_LIMIT, Relay
from bastion.mcp.notify import Broadcaster, Change, Listener
from bastion.store.bus import Bus, Handler, LocalBus
from tests.waiting import eventually


class Network:
    def __init__(self) -> None:
        self.buses: list[FakeBus] = []


class FakeBus(Bus):
    def __init__(self, network: Network) -> None:
        self.network = network
        self.handlers: dict[str, list[Handler]] = {}
        self.published: list[dict[str, Any]] = []
        network.buses.append(self)

    def subscribe(self, topic: str, handler: Handler) -> None:
        self.handlers.setdefault(topic, []).append(handler)

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        self.published.append(event)
        for bus in self.network.buses:  # itself first, as the real buses do
            bus.hear(topic, dict(event))

    def hear(self, topic: str, event: dict[str, Any]) -> None:
        for handler in self.handlers.get(topic, ()):
            handler(event)


class Inbox:
    """A listener's stream: every notification it was sent."""

    def __init__(self, broadcaster: Broadcaster, resources: set[str] | None = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.listener = Listener(self.send, resources=resources or set())
        broadcaster.add(self.listener)

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def methods(self) -> list[str]:
        return [message["method"] for message in self.messages]

    def uris(self) -> list[str]:
        return [message["params"]["uri"] for message in self.messages if "uri" in message["params"]]


MARKER = "marker://end"


class Instance:
    def __init__(self, network: Network) -> None:
        self.broadcaster = Broadcaster()
        self.bus = FakeBus(network)
        self.relay = Relay(self.broadcaster, self.bus)


@pytest.fixture
async def pair():
    network = Network()
    a, b = Instance(network), Instance(network)
    await a.relay.start()
    await b.relay.start()
    yield a, b
    await a.relay.close()
    await b.relay.close()


async def settled(raiser: Instance, *inboxes: Inbox) -> None:
    """Raise a marker change after everything else and wait until each inbox has it: the relay tells what it hears
    in order, so whatever was heard before has been told by then. The marker is then taken out of the inboxes."""
    await raiser.broadcaster.resource_updated(MARKER)

    async def all_have_it() -> bool:
        return all(MARKER in inbox.uris() for inbox in inboxes)

    await eventually(all_have_it, "the marker change reached every listener")
    for inbox in inboxes:
        inbox.messages = [message for message in inbox.messages if message["params"].get("uri") != MARKER]


async def test_a_list_change_reaches_both_instances_listeners_exactly_once_and_is_published_once(pair):
    a, b = pair
    here, there = Inbox(a.broadcaster, {MARKER}), Inbox(b.broadcaster, {MARKER})
    await a.broadcaster.list_changed("tools")
    await settled(a, here, there)
    assert here.methods() == ["notifications/tools/list_changed"]
    assert there.methods() == ["notifications/tools/list_changed"]
    assert there.messages[0]["params"] == {}  # nothing of the bus event leaks into the notification
    assert [event["what"] for event in a.bus.published] == ["list_changed", "resource_updated"]  # + the marker
    assert b.bus.published == []  # what B heard and told was never published again: no loop


async def test_a_resource_update_reaches_only_the_listeners_subscribed_to_it_on_either_instance(pair):
    a, b = pair
    subscribed_a, subscribed_b = (
        Inbox(a.broadcaster, {"file:///x", MARKER}),
        Inbox(b.broadcaster, {"file:///x", MARKER}),
    )
    other_b = Inbox(b.broadcaster, {"file:///y", MARKER})
    await b.broadcaster.resource_updated("file:///x")
    await settled(b, subscribed_a, subscribed_b, other_b)
    assert subscribed_a.uris() == ["file:///x"] and subscribed_b.uris() == ["file:///x"]
    assert other_b.messages == []
    assert a.bus.published == []
    assert [event["subject"] for event in b.bus.published] == ["file:///x", MARKER]


async def test_changes_flow_both_ways_each_told_once(pair):
    a, b = pair
    on_a, on_b = Inbox(a.broadcaster, {MARKER}), Inbox(b.broadcaster, {MARKER})
    await a.broadcaster.list_changed("prompts")
    await b.broadcaster.list_changed("resources")
    await settled(a, on_a, on_b)
    await settled(b, on_a, on_b)
    for inbox in (on_a, on_b):
        assert sorted(inbox.methods()) == [
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ]


async def test_on_a_bus_that_echoes_to_its_publisher_the_listeners_are_told_once():
    broadcaster, bus = Broadcaster(), LocalBus()
    relay = Relay(broadcaster, bus)
    await relay.start()
    try:
        inbox = Inbox(broadcaster, {"file:///x"})
        await broadcaster.list_changed("tools")
        await broadcaster.resource_updated("file:///x")
        assert not relay._waiting  # the echo was recognised, not queued to be told again
        for _ in range(5):  # and had it been, it would have been told by now
            await asyncio.sleep(0)
        assert inbox.methods() == ["notifications/tools/list_changed", "notifications/resources/updated"]
        assert bus_subscribers(bus) == 1
    finally:
        await relay.close()


def bus_subscribers(bus: LocalBus) -> int:
    return len(bus._handlers[TOPIC])


async def test_list_changed_soon_goes_out_once_the_relay_started_even_with_no_listener_here(pair):
    a, b = pair
    there = Inbox(b.broadcaster, {MARKER})
    a.broadcaster.list_changed_soon("tools")  # as App.tool() does while serving: nobody listens on A

    async def told() -> bool:
        return there.methods() == ["notifications/tools/list_changed"]

    await eventually(told, "B's listener heard of the tool added on A")
    await settled(a, there)
    assert there.methods() == ["notifications/tools/list_changed"]


@pytest.mark.parametrize(
    "event",
    [
        {"origin": "peer", "what": "list_changed", "subject": "secrets"},  # not a list
        {"origin": "peer", "what": "list_changed", "subject": ["tools"]},
        {"origin": "peer", "what": "resource_updated", "subject": ""},
        {"origin": "peer", "what": "resource_updated", "subject": 42},
        {"origin": "peer", "what": "resource_updated", "subject": "file:///" + "x" * URI_LIMIT},
        {"origin": "peer", "what": "tools/call", "subject": "tools"},
        {"origin": 7, "what": "list_changed", "subject": "tools"},
        {"what": "list_changed", "subject": "tools"},
        {},
    ],
)
async def test_what_a_peer_sends_that_is_not_a_change_is_dropped_and_nothing_is_told(pair, event, caplog):
    a, b = pair
    inbox = Inbox(b.broadcaster, {MARKER, "file:///" + "x" * URI_LIMIT, ""})
    b.bus.hear(TOPIC, event)
    assert not b.relay._waiting
    assert "malformed change" in caplog.text and "secrets" not in caplog.text
    await settled(a, inbox)
    assert inbox.messages == []
    assert b.bus.published == []


async def test_identical_changes_waiting_together_are_told_once_different_ones_each(pair):
    a, b = pair
    inbox = Inbox(b.broadcaster, {"file:///x", MARKER})
    for subject in ("tools", "tools", "prompts", "tools"):
        b.bus.hear(TOPIC, {"origin": "peer", "what": "list_changed", "subject": subject})
    b.bus.hear(TOPIC, {"origin": "peer", "what": "resource_updated", "subject": "file:///x"})
    b.bus.hear(TOPIC, {"origin": "peer", "what": "resource_updated", "subject": "file:///x"})
    await settled(a, inbox)
    assert inbox.methods() == [
        "notifications/tools/list_changed",
        "notifications/prompts/list_changed",
        "notifications/resources/updated",
    ]


async def test_a_full_backlog_drops_what_comes_next_and_keeps_what_waits(caplog):
    broadcaster = Broadcaster()
    relay = Relay(broadcaster, LocalBus(), backlog=2)  # not started yet: nothing is told meanwhile
    inbox = Inbox(broadcaster, {"u:1", "u:2", "u:3"})
    for uri in ("u:1", "u:2", "u:3"):
        relay.heard({"origin": "peer", "what": "resource_updated", "subject": uri})
    assert "backlog full" in caplog.text
    await relay.start()
    try:

        async def told() -> bool:
            return inbox.uris() == ["u:1", "u:2"] and not relay._waiting

        await eventually(told, "the two waiting changes were told")
        relay.heard({"origin": "peer", "what": "resource_updated", "subject": "u:3"})  # room again

        async def then_the_next() -> bool:
            return inbox.uris() == ["u:1", "u:2", "u:3"]

        await eventually(then_the_next, "a change heard once there was room was told")
    finally:
        await relay.close()


async def test_a_uri_too_large_to_relay_is_told_here_and_not_published(pair, caplog):
    a, b = pair
    huge = "file:///" + "é" * URI_LIMIT
    here, there = Inbox(a.broadcaster, {huge}), Inbox(b.broadcaster, {huge, MARKER})
    await a.broadcaster.resource_updated(huge)
    assert here.uris() == [huge]
    assert a.bus.published == [] and "too large to relay" in caplog.text
    await settled(a, there)
    assert there.messages == []


async def test_a_bus_that_fails_to_publish_does_not_fail_the_caller_and_listeners_here_are_told(caplog):
    class Broken(LocalBus):
        async def publish(self, topic: str, event: dict[str, Any]) -> None:
            raise ConnectionError("down")

    broadcaster = Broadcaster()
    relay = Relay(broadcaster, Broken())
    await relay.start()
    try:
        inbox = Inbox(broadcaster, {"file:///x"})
        await broadcaster.resource_updated("file:///x")  # does not raise
        assert inbox.uris() == ["file:///x"]
        assert "could not be forwarded" in caplog.text
    finally:
        await relay.close()


async def test_a_closed_relay_publishes_nothing_and_tells_nothing_more(pair):
    a, b = pair
    await a.relay.close()
    there = Inbox(b.broadcaster, {MARKER})
    here = Inbox(a.broadcaster)
    await a.broadcaster.list_changed("tools")
    assert here.methods() == ["notifications/tools/list_changed"]  # still told on its own instance
    assert a.bus.published == []
    await settled(b, there)
    assert there.messages == []


async def test_deliver_tells_listeners_only_and_never_forwards():
    broadcaster = Broadcaster()
    forwarded: list[Change] = []

    async def forwarder(change: Change) -> None:
        forwarded.append(change)

    broadcaster.forward(forwarder)
    inbox = Inbox(broadcaster)
    await broadcaster.deliver(Change("list_changed", "tools"))
    assert inbox.methods() == ["notifications/tools/list_changed"] and forwarded == []
    await broadcaster.list_changed("tools")
    assert forwarded == [Change("list_changed", "tools")]
    with pytest.raises(KeyError):
        await broadcaster.list_changed("secrets")  # an unknown kind is refused before anything goes out
    assert forwarded == [Change("list_changed", "tools")]
    broadcaster.stop_forwarding(forwarder)
    await broadcaster.list_changed("tools")
    assert len(forwarded) == 1
