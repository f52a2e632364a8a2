"""The bus through Redis pub/sub: every instance sharing a Redis (or a Redis Cluster) hears every event.

All topics travel on one channel (`bastion:bus` by default) as orjson `{"origin", "topic", "event"}`. On a
Cluster it is a sharded channel (SPUBLISH / SSUBSCRIBE, Redis 7): the listener subscribes on the master that
owns the channel's slot and starts again if the slot moves.

- `publish` tells this instance's subscribers at once, then sends the event to Redis. Each bus has an origin id
  of its own and its listener drops what it sent itself: a local subscriber hears an event exactly once. What
  Redis cannot take now waits in an outbox (the newest OUTBOX_LIMIT events, in order), sent once the bus is
  connected again (and tried again at every heartbeat), to the instances listening then; `publish` does not
  raise for it, as on the PostgreSQL bus.
- A listener task, started by start(), reads the channel and pings the server every `heartbeat` seconds.
  When the connection drops, or nothing (not even a pong) came back for two heartbeats and a timeout, it
  connects again with a growing pause (0.1 s, doubling, at most 2 s) and subscribes again.
- Pub/sub keeps nothing for a listener that is away: events published while an instance was disconnected never
  reach it. `healthy` is False (and `disconnected_since` the monotonic time it became so) from the moment the
  listener's connection is in doubt until it is subscribed again, so that what depends on hearing events
  (cached token verifications) can stop trusting itself.

A message on the channel that is not a well-formed event is dropped with a warning that does not quote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from ..errors import StoreUnavailable
from ..redis import CLOSED_TRANSPORT
from .base import Bus, Handler
from .local import LocalBus

log = logging.getLogger("bastion.bus")

CHANNEL = "bastion:bus"
TIMEOUT_SECONDS = 3.0
HEARTBEAT_SECONDS = 1.0
OUTBOX_LIMIT = 1000
FIRST_PAUSE, LONGEST_PAUSE = 0.1, 2.0
FAULTS = (RedisError, RedisClusterException, OSError, TimeoutError)


class _Lost(Exception):
    """The subscription ended (a silent server, an unsubscribe from a moved slot)."""


def _node_url(url: str, host: str, port: int) -> str:
    """`url` with another host and port (credentials, TLS and options kept): a connection to one Cluster node."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{credentials}@{address}" if credentials else address))


@dataclass
class _Subscription:
    client: Redis
    pubsub: PubSub

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await self.client.aclose()


class RedisBus(Bus):
    def __init__(
        self,
        url: str,
        *,
        cluster: bool | None = None,
        channel: str = CHANNEL,
        timeout: float = TIMEOUT_SECONDS,
        heartbeat: float = HEARTBEAT_SECONDS,
    ) -> None:
        """`url` as for RedisStore; `cluster`: a Redis Cluster (None: ask the server)."""
        self.url = url
        self.cluster = cluster
        self.channel = channel
        self.timeout = timeout
        self.heartbeat = heartbeat
        self.origin = secrets.token_hex(16)
        self._local = LocalBus()  # this instance's subscribers
        self._publisher: Redis | RedisCluster | None = None
        self._listener: asyncio.Task[None] | None = None
        self._outbox: deque[bytes] = deque(maxlen=OUTBOX_LIMIT)
        self._sending = asyncio.Lock()
        self.disconnected_since: float | None = time.monotonic()  # None while subscribed

    @property
    def healthy(self) -> bool:
        """Subscribed and answering: events other instances publish reach this one."""
        return self.disconnected_since is None

    def _set_healthy(self, healthy: bool) -> None:
        if healthy:
            if self.disconnected_since is not None:
                self.generation += 1  # what was missed meanwhile is gone: caches from before are stale
            self.disconnected_since = None
        elif self.disconnected_since is None:
            self.disconnected_since = time.monotonic()

    def _options(self) -> dict[str, Any]:
        return {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout, "retry": Retry(NoBackoff(), 0)}

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._local.subscribe(topic, handler)

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        self._local.deliver(topic, event)
        self._outbox.append(orjson.dumps({"origin": self.origin, "topic": topic, "event": event}))
        await self._flush()

    async def _flush(self) -> None:
        """Send what waits to be sent, oldest first; what Redis cannot take now waits for the next try."""
        async with self._sending:
            while self._outbox and self._publisher is not None:
                try:
                    if isinstance(self._publisher, RedisCluster):
                        await self._publisher.execute_command("SPUBLISH", self.channel, self._outbox[0])
                    else:
                        await self._publisher.publish(self.channel, self._outbox[0])
                except FAULTS as exc:
                    log.warning("redis bus: publishing deferred until Redis answers again (%s)", type(exc).__name__)
                    return
                except Exception as exc:  # the driver's slips while Redis goes away (uvloop's closed transport)
                    expected = CLOSED_TRANSPORT in str(exc)
                    log.warning(
                        "redis bus: publishing deferred until Redis answers again (%s)",
                        type(exc).__name__,
                        exc_info=None if expected else exc,
                    )
                    return
                self._outbox.popleft()

    # --- connecting ---------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._listener is not None:
            return
        publisher: Redis | RedisCluster | None = None
        try:
            if self.cluster is None:
                probe = Redis.from_url(self.url, **self._options())
                try:
                    self.cluster = bool((await probe.info("cluster")).get("cluster_enabled"))
                finally:
                    await probe.aclose()
            if self.cluster:
                publisher = RedisCluster.from_url(self.url, **self._options())
                await publisher.initialize()
            else:
                publisher = Redis.from_url(self.url, **self._options())
            await publisher.ping()
            subscription = await self._subscribe()
        except FAULTS as exc:
            if publisher is not None:
                with contextlib.suppress(Exception):
                    await publisher.aclose()
            raise StoreUnavailable(f"redis bus: cannot connect ({type(exc).__name__})") from exc
        self._publisher = publisher
        self._set_healthy(True)
        self._listener = asyncio.create_task(self._listen(subscription), name="bastion-redis-bus")

    async def _subscribe(self) -> _Subscription:
        """A connection subscribed to the channel (on the owning master, on a Cluster), the subscription
        confirmed."""
        url = self.url
        if self.cluster:
            topology = RedisCluster.from_url(self.url, **self._options())
            try:
                await topology.initialize()
                node = topology.get_node_from_key(self.channel)
                if node is None:
                    raise RedisClusterException("no master serves the bus channel's slot")
                url = _node_url(self.url, node.host, int(node.port))
            finally:
                await topology.aclose()
        client = Redis.from_url(url, **self._options())
        subscription = _Subscription(client, client.pubsub())
        try:
            confirmation = "ssubscribe" if self.cluster else "subscribe"
            if self.cluster:
                await subscription.pubsub.ssubscribe(self.channel)
            else:
                await subscription.pubsub.subscribe(self.channel)
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await subscription.pubsub.get_message(timeout=self.timeout)
                    if message is not None and _kind(message) == confirmation:
                        return subscription
        except BaseException:
            await subscription.close()
            raise

    async def _listen(self, subscription: _Subscription | None) -> None:
        pause = FIRST_PAUSE
        try:
            while True:
                try:
                    if subscription is None:
                        subscription = await self._subscribe()
                        log.info("the redis bus is connected again")
                        pause = FIRST_PAUSE
                    self._set_healthy(True)
                    await self._flush()
                    await self._read(subscription.pubsub)
                except (*FAULTS, _Lost) as exc:
                    if self.healthy:
                        log.warning(
                            "the redis bus lost its connection (%s): events from other instances are missed until "
                            "it is back",
                            type(exc).__name__,
                        )
                    self._set_healthy(False)
                    if subscription is not None:
                        await subscription.close()
                        subscription = None
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, LONGEST_PAUSE)
        finally:
            self._set_healthy(False)
            if subscription is not None:
                await subscription.close()

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        last_heard = next_ping = loop.time()
        while True:
            if loop.time() >= next_ping:
                await pubsub.ping()
                next_ping = loop.time() + self.heartbeat
                await self._flush()
            message = await pubsub.get_message(timeout=self.heartbeat)
            now = loop.time()
            if message is not None:
                last_heard = now
                kind = _kind(message)
                if kind in ("message", "smessage"):
                    self._receive(message["data"])
                elif kind in ("unsubscribe", "sunsubscribe"):
                    raise _Lost("unsubscribed (the channel's slot moved?)")
            if now - last_heard > 2 * self.heartbeat + self.timeout:
                raise _Lost("the server stopped answering")

    def _receive(self, data: Any) -> None:
        try:
            message = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            message = None
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("origin"), str)
            or not isinstance(message.get("topic"), str)
            or not isinstance(message.get("event"), dict)
        ):
            log.warning("a message on the redis bus channel that is not a Bastion event was dropped")
            return
        if message["origin"] == self.origin:
            return  # told already, when it was published
        self._local.deliver(message["topic"], message["event"])

    async def close(self) -> None:
        self._set_healthy(False)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.aclose()


def _kind(message: dict[str, Any]) -> str:
    kind = message["type"]
    return kind.decode() if isinstance(kind, bytes) else str(kind)
