"""Resumable SSE streams for 2025-11-25 sessions: every event of a stream is kept, briefly, under an id.

A client whose stream is cut (a proxy timeout, or a server that ends the stream on purpose to make a long call
survive such proxies) reconnects with GET and Last-Event-ID, and receives what it missed, then the rest.
Event ids are "<stream>.<sequence>", so an id names its stream.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator

MAX_EVENTS_PER_STREAM = 1000
MAX_STREAMS_PER_SESSION = 64


class StreamLog:
    __slots__ = ("_changed", "events", "finished", "id", "seq")

    def __init__(self, stream_id: str) -> None:
        self.id = stream_id
        self.events: list[tuple[int, bytes]] = []
        self.seq = 0
        self.finished = False
        self._changed = asyncio.Event()

    def record(self, data: bytes) -> str:
        self.seq += 1
        self.events.append((self.seq, data))
        if len(self.events) > MAX_EVENTS_PER_STREAM:
            del self.events[: len(self.events) - MAX_EVENTS_PER_STREAM]
        self._wake()
        return f"{self.id}.{self.seq}"

    def finish(self) -> None:
        self.finished = True
        self._wake()

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

    def __init__(self) -> None:
        self._logs: OrderedDict[str, StreamLog] = OrderedDict()
        self._count = 0

    def new(self) -> StreamLog:
        self._count += 1
        log = StreamLog(f"s{self._count}")
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
