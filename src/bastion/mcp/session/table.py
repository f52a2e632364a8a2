"""Where Streamable HTTP keeps its open sessions, by id (stdio has one session, the process, and no table).

On one instance the table is the whole truth. Given `SharedSessions` (many instances), it holds this instance's
copies of shared sessions: a copy is used as long as nothing may have changed it elsewhere (the shared epoch is
the same and no change was heard), and read again otherwise; changes are written through; ending a session ends
it everywhere, while forgetting an idle copy (or shutting down) only forgets it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import Refusal, Refused
from .shared import Record, SessionsUnavailable, SharedSessions
from .state import Session

if TYPE_CHECKING:
    from ..notify import Broadcaster

T = TypeVar("T")


class SessionTable:
    """Open HTTP sessions, capped in number; idle ones are closed when the table is next touched."""

    def __init__(
        self,
        limit: int = 10_000,
        idle_seconds: float = 3600.0,
        broadcaster: Broadcaster | None = None,
        shared: SharedSessions | None = None,
        counted: Callable[[int], None] | None = None,
    ) -> None:
        self.limit = limit
        self.counted = counted  # told of each session added (+1) and removed (-1): the sessions metric
        self.broadcaster = broadcaster  # a removed session stops listening for notifications
        self.idle_seconds = idle_seconds
        self.shared = shared
        self._sessions: dict[str, Session] = {}
        self._keys: dict[str, str] = {}  # shared key -> session id, for what other instances tell
        self._next_sweep = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        if shared is not None:
            shared.listen(self)

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        """This instance's session (or copy), if it has one that is not idle."""
        session = self._sessions.get(session_id)
        if session is not None and time.monotonic() - session.last_seen > self.idle_seconds:
            self.remove(session_id)
            return None
        return session

    def add(self, session: Session) -> bool:
        self.sweep()
        if len(self._sessions) >= self.limit:
            return False
        known = session.id in self._sessions
        self._sessions[session.id] = session
        if self.shared is not None:
            self._keys[self.shared.key(session.id)] = session.id
        if self.counted is not None and not known:
            self.counted(1)
        return True

    def remove(self, session_id: str) -> None:
        """Forget a session here (its copy, on many instances): its calls here are cancelled."""
        session = self._sessions.pop(session_id, None)
        if session is not None:
            if self.counted is not None:
                self.counted(-1)
            if self.shared is not None:
                self._keys.pop(self.shared.key(session_id), None)
            session.close()
            self.stop_listening(session)

    def stop_listening(self, session: Session) -> None:
        if self.broadcaster is not None and session.listener is not None:
            self.broadcaster.discard(session.listener)
        session.listener = None

    def sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 30
        for session_id in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]:
            self.remove(session_id)

    def close_all(self) -> None:
        """Shutting down: forget every session here. Shared sessions live on for the other instances."""
        for session_id in list(self._sessions):
            self.remove(session_id)

    # --- what a request does to its session (written through when sessions are shared) --------------------
    async def open(self, session: Session) -> bool:
        """A session `initialize` just opened; False if this instance holds too many."""
        if not self.add(session):
            return False
        if self.shared is not None:
            try:
                record = await self.shared.create(session.id, session.record())
            except SessionsUnavailable:
                self.remove(session.id)
                raise
            self._keep(session, record, self.shared.epoch())
        return True

    async def find(self, session_id: str) -> Session | None:
        """The session named `session_id`, read again from the shared record unless this copy is sure to be
        current. SessionsUnavailable if the shared record cannot be read; Refused if too many are open here."""
        session = self.get(session_id)
        shared = self.shared
        if shared is None:
            return session
        if session is not None and not session.stale and session.epoch is not None and session.epoch == shared.epoch():
            if shared.due(session.record_meta):
                return await self._refresh(session)
            return session
        epoch = shared.epoch()  # taken before reading: a change told meanwhile marks the copy stale again
        record = await shared.load(session_id)
        if record is None:  # ended elsewhere, or expired
            if session is not None:
                self.remove(session_id)
            return None
        if session is None:
            session = Session.from_record(session_id, record, shared)
            if not self.add(session):
                raise Refused(Refusal.TOO_MANY_SESSIONS, "Service Unavailable: too many open sessions")
        self._keep(session, record, epoch)
        return session

    async def change(self, session: Session, change: Callable[[Session], T]) -> T:
        """Apply `change` (one of the STATE_METHODS) to a session; on many instances, to its shared record."""
        if self.shared is None:
            return change(session)
        outcome: list[T] = []

        def apply(record: Record) -> None:
            draft = Session.from_record(session.id, record)
            outcome.append(change(draft))  # raises (and nothing is written) for a change the method refuses
            record.update(draft.record())

        epoch = self.shared.epoch()
        record = await self.shared.update(session.id, apply)
        if record is None:
            self.remove(session.id)
            raise Refused(Refusal.SESSION_NOT_FOUND, "Session not found")
        self._keep(session, record, epoch)
        return outcome[-1]

    async def end(self, session: Session) -> None:
        """DELETE: the session ends here and everywhere."""
        if self.shared is not None:
            await self.shared.end(session.id)
        self.remove(session.id)

    async def cancel(self, session: Session, request_id: object) -> None:
        """notifications/cancelled: the request may be running on another instance."""
        session.cancel(request_id)
        if self.shared is not None and isinstance(request_id, str | int) and not isinstance(request_id, bool):
            await self.shared.cancel(session.id, request_id)

    async def _refresh(self, session: Session) -> Session:
        epoch = self.shared.epoch() if self.shared is not None else None
        record = await self.shared.update(session.id, lambda record: None) if self.shared is not None else None
        if record is None:
            self.remove(session.id)
            raise Refused(Refusal.SESSION_NOT_FOUND, "Session not found")
        self._keep(session, record, epoch)
        return session

    def _keep(self, session: Session, record: Record, epoch: object | None) -> None:
        session.apply(record)
        session.epoch = epoch
        session.stale = False

    # --- what other instances tell (SessionEvents) -------------------------------------------------------
    def changed(self, key: str, revision: int, state: Record | None) -> None:
        session = self._by_key(key)
        if session is None or session.record_meta.get("n", -1) >= revision:
            return
        if state is not None:
            # Applied at once, before any notification raised after the change can arrive: a copy streaming to
            # its client must know a new subscription before the resource it names is updated.
            session.apply({**state, **session.record_meta, "n": revision})
        else:
            session.stale = True
            if session.listener is not None:
                self._spawn(self._reload(session))

    def ended(self, key: str) -> None:
        session = self._by_key(key)
        if session is not None:
            self.remove(session.id)

    def cancelled(self, key: str, request_id: str | int) -> None:
        session = self._by_key(key)
        if session is not None:
            session.cancel(request_id)

    def answered(self, key: str, request_id: str) -> None:
        session = self._by_key(key)
        if session is not None and session.waits_for(request_id):
            self._spawn(session.fetch_answer(request_id))

    def _by_key(self, key: str) -> Session | None:
        session_id = self._keys.get(key)
        return self._sessions.get(session_id) if session_id is not None else None

    async def _reload(self, session: Session) -> None:
        with contextlib.suppress(SessionsUnavailable, Refused):  # the next request reads it again
            await self.find(session.id)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
