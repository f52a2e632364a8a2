"""The bus across instances on PostgreSQL: LISTEN/NOTIFY on one channel, over one connection of its own.

publish() tells this instance's subscribers at once, directly, then NOTIFYs the others with a small JSON
payload `{"s": <sender>, "t": <topic>, "e": <event>}`. Every instance hears its own notification too; it knows
it by the sender id and skips it, so each subscriber is told exactly once per event.

When the listening connection drops (the database restarted, the network broke), `healthy` turns False at once
and the bus reconnects in the background with a growing delay (up to `max_backoff` seconds). Events published
elsewhere in the meantime are lost to this instance: whoever caches what an event would invalidate must stop
trusting its cache while `healthy` is False (and drop it when the bus is back). Events published here in the
meantime reach local subscribers at once and are sent to the others once the bus is back (the newest
`OUTBOX_LIMIT` of them, in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import Any

import orjson

from ..errors import StoreUnavailable
from .base import Bus, Handler
from .local import LocalBus

log = logging.getLogger("bastion.bus")

CHANNEL = "bastion_bus"
PAYLOAD_LIMIT = 7900  # NOTIFY refuses payloads of 8000 bytes or more
OUTBOX_LIMIT = 1000


class PostgresBus(Bus):
    def __init__(
        self,
        url: str,
        *,
        channel: str = CHANNEL,
        connect_timeout: float = 5.0,
        max_backoff: float = 5.0,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.heartbeat_seconds = heartbeat_seconds
        self.sender = secrets.token_hex(8)  # tells this instance's own notifications apart
        self._local = LocalBus()  # this instance's subscribers
        self._conn: Any = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._outbox: deque[bytes] = deque(maxlen=OUTBOX_LIMIT)
        self._reconnecting: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False
        self.disconnected_since: float | None = time.monotonic()  # monotonic; None while connected

    @property
    def healthy(self) -> bool:
        """Whether this instance is hearing the others' events right now."""
        return self._conn is not None and not self._conn.is_closed()

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._local.subscribe(topic, handler)

    async def start(self) -> None:
        """Connect and LISTEN; StoreUnavailable if the database cannot be reached."""
        if self._closed:
            raise StoreUnavailable("postgres bus: closed")
        if self._conn is None:
            await self._connect()
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name="bastion-bus-heartbeat")

    async def _beat(self) -> None:
        """A connection can die without a word (a network cut): ask it now and then, and drop it if it is mute."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            conn = self._conn
            if conn is None or conn.is_closed():
                continue
            async with self._lock:
                try:
                    await conn.execute("SELECT 1", timeout=self.connect_timeout)
                except (TimeoutError, Exception):
                    conn.terminate()  # its termination listener starts the reconnection

    async def _connect(self) -> None:
        import asyncpg  # only when this backend is configured

        try:
            conn = await asyncpg.connect(
                self.url, timeout=self.connect_timeout, command_timeout=self.connect_timeout,
                server_settings={"application_name": "bastion-bus"},
            )  # fmt: skip
        except (TimeoutError, Exception) as exc:
            raise StoreUnavailable(f"postgres bus: cannot connect ({type(exc).__name__})") from exc
        try:
            await conn.add_listener(self.channel, self._heard)
        except (TimeoutError, Exception) as exc:
            conn.terminate()
            raise StoreUnavailable(f"postgres bus: cannot listen ({type(exc).__name__})") from exc
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self.disconnected_since = None
        self.generation += 1
        await self._flush_outbox()

    def _lost(self, conn: Any) -> None:
        if conn is not self._conn or self._closed:
            return
        self._conn = None
        self.disconnected_since = time.monotonic()
        log.warning("bus connection lost: reconnecting (events from other instances are missed until then)")
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(), name="bastion-bus-reconnect")

    async def _reconnect(self) -> None:
        delay = 0.05
        while not self._closed and self._conn is None:
            try:
                await self._connect()
            except StoreUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            else:
                log.warning("bus connection back")

    def _heard(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        try:
            message = orjson.loads(payload if isinstance(payload, str | bytes) else "")
            sender, topic, event = message["s"], message["t"], message["e"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("bus: ignored a malformed notification on %s", channel)
            return
        if sender != self.sender and isinstance(topic, str) and isinstance(event, dict):
            self._local.deliver(topic, event)

    async def publish(self, topic: str, event: dict[str, Any]) -> None:
        payload = orjson.dumps({"s": self.sender, "t": topic, "e": event})
        if len(payload) > PAYLOAD_LIMIT:
            raise ValueError(f"bus: an event of {len(payload)} bytes is too large for NOTIFY")
        self._local.deliver(topic, event)
        self._outbox.append(payload)
        await self._flush_outbox()

    async def _flush_outbox(self) -> None:
        """Send what waits to be sent, oldest first; what cannot be sent now waits for the reconnection."""
        async with self._lock:
            while self._outbox and self.healthy:
                try:
                    await self._conn.execute("SELECT pg_notify($1, $2)", self.channel, self._outbox[0].decode())
                except (TimeoutError, Exception) as exc:
                    log.warning("bus: publish deferred until the connection is back (%s)", type(exc).__name__)
                    return
                self._outbox.popleft()

    async def close(self) -> None:
        self._closed = True
        for task in (self._reconnecting, self._heartbeat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reconnecting = self._heartbeat = None
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), self.connect_timeout)
            except (TimeoutError, Exception):
                conn.terminate()
