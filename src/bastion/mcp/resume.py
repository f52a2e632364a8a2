"""Resumable SSE streams for 2025-11-25 sessions: every event of a stream is kept, briefly, under an id.

A client whose stream is cut (a proxy timeout, or a server that ends the stream on purpose to make a long call
survive such proxies) reconnects with GET and Last-Event-ID, and receives what it missed, then the rest.
Event ids are "<stream>.<sequence>", so an id names its stream.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session.shared import StreamSink

MAX_EVENTS_PER_STREAM = 1000
MAX_STREAMS_PER_SESSION = 64


class StreamLog:
    __slots__ = ("_changed", "events", "finished", "id", "seq", "sink")

    def __init__(self, stream_id: str, sink: StreamSink | None = None) -> None:
        self.id = stream_id
        self.sink = sink
        self.events: list[tuple[int, bytes]] = []
        self.seq = 0
        self.finished = False
        self._changed = asyncio.Event()

    def record(self, data: bytes) -> str:
        self.seq += 1
        self.events.append((self.seq, data))
        if len(self.events) > MAX_EVENTS_PER_STREAM:
            del self.events[: len(self.events) - MAX_EVENTS_PER_STREAM]
        if self.sink is not None:
            self.sink.append(self.seq, data)
        self._wake()
        return f"{self.id}.{self.seq}"

    def finish(self) -> None:
        if not self.finished and self.sink is not None:
            self.sink.finish()
        self.finished = True
        self._wake()

    async def kept(self) -> None:
        """Once the events so far can be resumed on another instance (at once on one instance)."""
        if self.sink is not None:
            await self.sink.kept()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, after: int) -> AsyncIterator[tuple[str, bytes]]:
        """Events after sequence `after` (priming events skipped), then new ones until the stream finishes."""
        position = after
        while True:
            changed = self._changed
            for seq, data in self.events:
                if seq > position:
                    position = seq
                    if data:
                        yield f"{self.id}.{seq}", data
            if self.finished:
                return
            await changed.wait()


class StreamLogs:
    """A session's recent streams, oldest forgotten first."""

    def __init__(self, sink: Callable[[str], StreamSink] | None = None) -> None:
        self._logs: OrderedDict[str, StreamLog] = OrderedDict()
        self._sink = sink

    def new(self) -> StreamLog:
        stream_id = secrets.token_urlsafe(9)
        log = StreamLog(stream_id, self._sink(stream_id) if self._sink is not None else None)
        self._logs[log.id] = log
        while len(self._logs) > MAX_STREAMS_PER_SESSION:
            self._logs.popitem(last=False)
        return log

    def find(self, event_id: str) -> tuple[StreamLog, int] | None:
        stream_id, _, seq = event_id.partition(".")
        log = self._logs.get(stream_id)
        if log is None or not seq.isdigit():
            return None
        return log, int(seq)
