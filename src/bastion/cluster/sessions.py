"""Legacy MCP sessions served by every instance: the engine's SharedSessions, on the shared store and the bus.

The store holds the truth: each session's record (mcpsession:<hash>), changed only by consuming its current
revision key (mcprev:<hash>:<n>) in the same commit that writes the next, so that of two instances changing one
session at once one retries rather than one change being lost; the answers clients give to questions an instance
asked (mcpanswer:...), until that instance takes them; and the events of resumable streams (mcpstream:...,
mcpevent:...), written in order by one writer per stream, for a client resuming on another instance. Ending a
session is one commit deleting its record and every prefix it owns. Records expire when idle; a copy in use is
written again once a quarter of the idle time has passed.

The bus only rings doorbells, with small events that never carry a session id (a digest names the session) nor
anything a client sent beyond a request id: {"o": origin, "k": kind, "h": session hash, ...}. Kinds: "changed" (the
new revision, and the log level and subscriptions when small), "ended", "cancel" (a request id), "answered" (a
request id, and the instance that asked), "appended" (a stream and its last event). An instance ignores its own.
A lost doorbell costs time, never correctness: copies are not trusted across a bus outage (see `epoch`), an asker
looks for its answer every few seconds, a follower reads the stream every second.

Answers and stream events are what clients and tools said (an elicited form, a tool's result): they are stored
encrypted (AES-256-GCM under a key derived from the shared state secret, bound to the record's key), so a dump of
the store does not show them. Session records hold no secret and are stored in clear.

Request ids sent to clients are `bastion-<origin>-<n>-<mac>`: they name the instance that waits for the answer,
and the MAC (keyed by the shared state secret) stops a client from making another instance store answers nobody
asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from ..mcp.jsonrpc import Response
from ..mcp.session import SessionEvents, SessionsUnavailable
from ..mcp.session.shared import Record
from ..ops.sampled import SampledLog
from ..security.crypto import open_data, seal_data
from ..store import Commit, Store, StoreUnavailable, keys
from ..store.bus import Bus

log = logging.getLogger("bastion.sessions")
sampled = SampledLog(log)

TOPIC = "mcp.session"
ANSWER_TTL = 120.0  # an answer nobody takes is gone after this
STREAM_TTL = 600.0  # how long a stream's events wait for a client resuming on another instance
STORED_EVENTS = 1000  # per stream, as in memory (mcp/resume.py)
STATE_EVENT_LIMIT = 4000  # bytes of log level and subscriptions sent with "changed"; beyond, copies read the record
REQUEST_ID_LIMIT = 200  # longer client request ids are not relayed for cancellation
FOLLOW_POLL_SECONDS = 1.0
UPDATE_ATTEMPTS = 16


class StoreSessions:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        secret: bytes,
        *,
        idle_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.bus = bus
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.origin = secrets.token_hex(8)
        self._mac_key = hmac.new(secret, b"bastion mcp request ids", hashlib.sha256).digest()
        self._data_key = hmac.new(secret, b"bastion mcp session data", hashlib.sha256).digest()
        self._ids = itertools.count(1)
        self._events: SessionEvents | None = None
        self._bells: dict[tuple[str, str], set[asyncio.Event]] = {}  # (session, stream) -> followers waiting
        self._writers: set[asyncio.Task[None]] = set()
        bus.subscribe(TOPIC, self._heard)

    def listen(self, events: SessionEvents) -> None:
        self._events = events

    def key(self, session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def epoch(self) -> object | None:
        return self.bus.generation if self.bus.healthy else None

    def due(self, record: Record) -> bool:
        written = record.get("t")
        return not isinstance(written, int | float) or self.clock() - written > self.idle_seconds / 4

    async def close(self) -> None:
        """Shutting down: streams still being written stop (their clients resume from what was written)."""
        for writer in list(self._writers):
            writer.cancel()
        for writer in list(self._writers):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    # --- the record -------------------------------------------------------------------------------------
    async def create(self, session_id: str, record: Record) -> Record:
        h = self.key(session_id)
        stored = {**record, "n": 0, "t": self.clock()}
        change = Commit().add(keys.mcp_session(h), stored, self.idle_seconds)
        change.add(keys.mcp_revision(h, 0), {}, self.idle_seconds)
        if not await self._commit(change):
            raise SessionsUnavailable("a session with this id exists")  # 256 random bits: never in practice
        return stored

    async def load(self, session_id: str) -> Record | None:
        return await self._get(keys.mcp_session(self.key(session_id)))

    async def update(self, session_id: str, apply: Callable[[Record], None]) -> Record | None:
        h = self.key(session_id)
        for _ in range(UPDATE_ATTEMPTS):
            current = await self._get(keys.mcp_session(h))
            revision = current.get("n") if current is not None else None
            if current is None or not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
                return None
            updated = dict(current)
            apply(updated)
            updated["n"], updated["t"] = revision + 1, self.clock()
            change = Commit(consume=[keys.mcp_revision(h, revision)])
            change.set(keys.mcp_session(h), updated, self.idle_seconds)
            change.set(keys.mcp_revision(h, revision + 1), {}, self.idle_seconds)
            if await self._commit(change):
                await self.tell({"k": "changed", "h": h, "n": revision + 1, **_small_state(updated)})
                return updated
        raise SessionsUnavailable("the session changed too often to be changed now")

    async def end(self, session_id: str) -> None:
        h = self.key(session_id)
        await self._commit(Commit(delete=[keys.mcp_session(h)], delete_prefix=keys.session_under(h)))
        await self.tell({"k": "ended", "h": h})

    async def cancel(self, session_id: str, request_id: str | int) -> None:
        if len(orjson.dumps(request_id)) <= REQUEST_ID_LIMIT:
            await self.tell({"k": "cancel", "h": self.key(session_id), "id": request_id})

    # --- answers to questions asked by another instance ----------------------------------------------------
    def request_id(self, session_id: str) -> str:
        n = next(self._ids)
        return f"bastion-{self.origin}-{n}-{self._mac(self.key(session_id), self.origin, str(n))}"

    async def answer(self, session_id: str, response: Response) -> None:
        h = self.key(session_id)
        asker = self._asker(h, response.id)
        if asker is None or asker == self.origin:
            return  # not a question any instance asked in this session, or one asked here that nobody waits for
        said = {"r": response.result} if response.error is None else {"e": response.error}
        key = keys.mcp_answer(h, _digest(str(response.id)))
        await self._commit(Commit().set(key, {"x": self.seal(key, orjson.dumps(said))}, ANSWER_TTL))
        await self.tell({"k": "answered", "h": h, "id": response.id, "to": asker})

    async def take_answer(self, session_id: str, request_id: str) -> Response | None:
        key = keys.mcp_answer(self.key(session_id), _digest(request_id))
        try:
            record = await self.store.take(key)
        except StoreUnavailable as exc:
            raise SessionsUnavailable(str(exc)) from None
        opened = self.open(key, record.get("x")) if record is not None else None
        said = orjson.loads(opened) if opened is not None else None
        if not isinstance(said, dict):
            return None
        error = said.get("e")
        return Response(request_id, said.get("r"), error if isinstance(error, dict) else None)

    def _asker(self, h: str, request_id: object) -> str | None:
        """The instance a request id names, if the id is one Bastion made for this session."""
        if not isinstance(request_id, str) or len(request_id) > REQUEST_ID_LIMIT:
            return None
        parts = request_id.split("-")
        if len(parts) != 4 or parts[0] != "bastion":
            return None
        _, origin, n, mac = parts
        return origin if hmac.compare_digest(mac, self._mac(h, origin, n)) else None

    def _mac(self, h: str, origin: str, n: str) -> str:
        return hmac.new(self._mac_key, f"{h}|{origin}|{n}".encode(), hashlib.sha256).hexdigest()[:32]

    # --- resumable streams ----------------------------------------------------------------------------
    def stream_sink(self, session_id: str, stream_id: str) -> _Sink:
        return _Sink(self, self.key(session_id), stream_id)

    async def follow(self, session_id: str, event_id: str) -> AsyncIterator[tuple[str, bytes]] | None:
        stream_id, _, seq = event_id.partition(".")
        if not stream_id or keys.SEPARATOR in stream_id or not seq.isdigit() or len(event_id) > 100:
            return None
        h = self.key(session_id)
        if await self._get(keys.mcp_stream(h, stream_id)) is None:
            return None
        return self._follow(h, stream_id, int(seq))

    async def _follow(self, h: str, stream_id: str, after: int) -> AsyncIterator[tuple[str, bytes]]:
        position = after
        bell = asyncio.Event()
        bells = self._bells.setdefault((h, stream_id), set())
        bells.add(bell)
        try:
            while True:
                bell.clear()  # before reading: an event appended meanwhile rings again
                head = await self.store.get(keys.mcp_stream(h, stream_id))
                if head is None:
                    return  # the session ended, or the stream expired
                last = head.get("last")
                if not isinstance(last, int):
                    return
                for seq in range(max(position + 1, last - STORED_EVENTS + 1), last + 1):
                    key = keys.mcp_event(h, stream_id, seq)
                    event = await self.store.get(key)
                    data = self.open(key, event.get("d")) if event is not None else None
                    if data:  # priming events are empty: a resumed stream has its own
                        yield f"{stream_id}.{seq}", data
                position = max(position, last)
                if head.get("done") is True:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bell.wait(), FOLLOW_POLL_SECONDS)
        except StoreUnavailable:
            sampled.warning("a resumed stream ended early: the store cannot be read")
        finally:
            bells.discard(bell)
            if not bells:
                self._bells.pop((h, stream_id), None)

    def start_writer(self, sink: _Sink) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(sink.write(), name="bastion-stream-writer")
        self._writers.add(task)
        task.add_done_callback(self._writers.discard)
        return task

    def seal(self, key: str, data: bytes) -> str:
        return seal_data(self._data_key, data, key.encode())

    def open(self, key: str, sealed: object) -> bytes | None:
        return open_data(self._data_key, sealed, key.encode()) if isinstance(sealed, str) else None

    # --- the bus ----------------------------------------------------------------------------------------
    async def tell(self, event: dict[str, Any]) -> None:
        try:
            await self.bus.publish(TOPIC, {"o": self.origin, **event})
        except Exception:  # the store has the truth: other instances read it when they stop trusting copies
            sampled.warning("a session event could not be sent to other instances")

    def _heard(self, event: dict[str, Any]) -> None:
        h, kind = event.get("h"), event.get("k")
        if event.get("o") == self.origin or not isinstance(h, str) or len(h) != 64:
            return
        if kind == "appended":
            stream = event.get("s")
            for bell in self._bells.get((h, stream), ()) if isinstance(stream, str) else ():
                bell.set()
            return
        events = self._events
        if events is None:
            return
        request_id = event.get("id")
        if kind == "changed" and _is_count(event.get("n")):
            events.changed(h, event["n"], _state(event))
        elif kind == "ended":
            events.ended(h)
            for (session, _), bells in list(self._bells.items()):
                for bell in bells if session == h else ():
                    bell.set()
        elif kind == "cancel" and isinstance(request_id, str | int) and not isinstance(request_id, bool):
            events.cancelled(h, request_id)
        elif kind == "answered" and event.get("to") == self.origin and isinstance(request_id, str):
            events.answered(h, request_id)

    # --- the store --------------------------------------------------------------------------------------
    async def _get(self, key: str) -> Record | None:
        try:
            return await self.store.get(key)
        except StoreUnavailable as exc:
            raise SessionsUnavailable(str(exc)) from None

    async def _commit(self, change: Commit) -> bool:
        try:
            return await self.store.commit(change)
        except StoreUnavailable as exc:
            raise SessionsUnavailable(str(exc)) from None


class _Sink:
    """One stream's events, copied to the store in order by one writer task (started by the first event)."""

    def __init__(self, sessions: StoreSessions, h: str, stream_id: str) -> None:
        self.sessions = sessions
        self.h = h
        self.stream_id = stream_id
        self._waiting: list[tuple[int, bytes]] = []
        self._finished = False
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._last = 0
        self._appended = 0  # the newest event handed over
        self._settled = 0  # the newest event written, or given up on
        self._flushed = asyncio.Event()  # set and replaced after every write

    def append(self, seq: int, data: bytes) -> None:
        self._waiting.append((seq, data))
        self._appended = seq
        self._ring()

    async def kept(self) -> None:
        target = self._appended
        while self._settled < target and self._writer is not None and not self._writer.done():
            await self._flushed.wait()

    def finish(self) -> None:
        self._finished = True
        self._ring()

    def _ring(self) -> None:
        self._wake.set()
        if self._writer is None:
            self._writer = self.sessions.start_writer(self)
            self._writer.add_done_callback(lambda _: self._flushed.set())  # a stopped writer keeps nobody waiting

    async def write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            done = self._finished
            if batch or done:
                await self._flush(batch, done)
            if done:
                return

    async def _flush(self, batch: list[tuple[int, bytes]], done: bool) -> None:
        h, stream = self.h, self.stream_id
        change = Commit()
        for seq, data in batch:
            key = keys.mcp_event(h, stream, seq)
            change.set(key, {"d": self.sessions.seal(key, data)}, STREAM_TTL)
            if seq > STORED_EVENTS:
                change.delete.append(keys.mcp_event(h, stream, seq - STORED_EVENTS))
        last = batch[-1][0] if batch else self._last
        change.set(keys.mcp_stream(h, stream), {"last": last, "done": done}, STREAM_TTL)
        try:
            await self.sessions.store.commit(change)
        except StoreUnavailable:
            sampled.warning("events of a resumable stream could not be kept for other instances")
        else:
            self._last = last
            await self.sessions.tell({"k": "appended", "h": h, "s": stream, "n": last})
        finally:
            self._settled = max(self._settled, last)
            self._flushed.set()
            self._flushed = asyncio.Event()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _small_state(record: Record) -> dict[str, Any]:
    state = {"l": record.get("l"), "s": record.get("s") or []}
    return {"st": state} if len(orjson.dumps(state)) <= STATE_EVENT_LIMIT else {}


def _state(event: dict[str, Any]) -> Record | None:
    """A change's log level and subscriptions, if sent and well formed."""
    state = event.get("st")
    if not isinstance(state, dict):
        return None
    level, subscriptions = state.get("l"), state.get("s")
    if not (level is None or isinstance(level, str)) or not isinstance(subscriptions, list):
        return None
    if not all(isinstance(uri, str) for uri in subscriptions):
        return None
    return {"l": level, "s": subscriptions}
