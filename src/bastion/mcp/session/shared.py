"""Legacy sessions shared by many instances: what the engine needs from whoever shares them.

On one instance a session lives in its SessionTable and nowhere else. Behind a load balancer without affinity
any instance may receive any request of a session, so what `initialize` agreed and what the client changed since
(log level, subscriptions) is kept where every instance reads it, and instances tell each other when a session
changed or ended, when a client cancels a request running elsewhere, and when the answer to a question one of
them asked the client lands on another. Events of resumable streams are kept there too, so a client may resume
a cut stream on any instance.

The engine never sees a store or a bus: compose hands the table an implementation of `SharedSessions`
(cluster/sessions.py), which tells the table what it hears through `SessionEvents`.

A session's record is a JSON object: "v" protocol version, "c" client capabilities, "i" client info, "p" the
subject of the principal that opened it, "l" log level, "s" subscribed URIs. Implementations add their own
fields (a revision, when it was written) and keep them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from ..jsonrpc import Response

Record = dict[str, Any]


class SessionsUnavailable(Exception):
    """Shared session state cannot be read or written now: the request is answered 503, to be tried again."""


class SessionEvents(Protocol):
    """What another instance did to a session, told to this instance's table (on the serving loop)."""

    def changed(self, key: str, revision: int, state: Record | None) -> None:
        """The record changed; `state` holds its new "l" and "s" when they were small enough to send."""

    def ended(self, key: str) -> None: ...

    def cancelled(self, key: str, request_id: str | int) -> None: ...

    def answered(self, key: str, request_id: str) -> None:
        """The client's answer to `request_id` waits in the shared store for whoever asked."""


class StreamSink(Protocol):
    """Where a resumable stream's events are copied, in order, for clients resuming on another instance."""

    def append(self, seq: int, data: bytes) -> None: ...

    def finish(self) -> None: ...

    async def kept(self) -> None:
        """Return once every event appended so far is where other instances find it (or could not be put there):
        a stream ended on purpose waits for this, so that a client resuming at once finds it elsewhere."""


class SharedSessions(Protocol):
    def listen(self, events: SessionEvents) -> None:
        """Tell `events` what other instances do to sessions (the table calls this once, when built)."""

    def key(self, session_id: str) -> str:
        """The name events use for a session (a digest: session ids never travel between instances)."""

    def epoch(self) -> object | None:
        """Changes whenever events may have been missed; None while they are being missed. A copy of a record
        read under one epoch is trusted only while the epoch is the same."""

    def due(self, record: Record) -> bool:
        """Whether the record should be written again now to stay alive (sessions expire when idle)."""

    async def create(self, session_id: str, record: Record) -> Record: ...

    async def load(self, session_id: str) -> Record | None: ...

    async def update(self, session_id: str, apply: Callable[[Record], None]) -> Record | None:
        """Apply `apply` to the current record and write it, atomically against other instances' updates; None
        if the session no longer exists. An exception from `apply` writes nothing."""

    async def end(self, session_id: str) -> None: ...

    async def cancel(self, session_id: str, request_id: str | int) -> None: ...

    def request_id(self, session_id: str) -> str:
        """A new id for a request to the client, which names this instance and cannot be forged for another."""

    async def answer(self, session_id: str, response: Response) -> None:
        """Route a client's answer that nobody here waits for to the instance that asked (if any did)."""

    async def take_answer(self, session_id: str, request_id: str) -> Response | None: ...

    def stream_sink(self, session_id: str, stream_id: str) -> StreamSink: ...

    async def follow(self, session_id: str, event_id: str) -> AsyncIterator[tuple[str, bytes]] | None:
        """The events of another instance's stream after `event_id` ("<stream>.<seq>"), then new ones until it
        finishes; None if no such stream is known."""
