"""Where Streamable HTTP keeps its open sessions, by id (stdio has one session, the process, and no table)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .state import Session

if TYPE_CHECKING:
    from ..notify import Broadcaster


class SessionTable:
    """Open HTTP sessions, capped in number; idle ones are closed when the table is next touched."""

    def __init__(
        self, limit: int = 10_000, idle_seconds: float = 3600.0, broadcaster: Broadcaster | None = None
    ) -> None:
        self.limit = limit
        self.broadcaster = broadcaster  # a removed session stops listening for notifications
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None and time.monotonic() - session.last_seen > self.idle_seconds:
            self.remove(session_id)
            return None
        return session

    def add(self, session: Session) -> bool:
        self.sweep()
        if len(self._sessions) >= self.limit:
            return False
        self._sessions[session.id] = session
        return True

    def remove(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close()
            if self.broadcaster is not None and session.listener is not None:
                self.broadcaster.discard(session.listener)

    def sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 30
        for session_id in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]:
            self.remove(session_id)

    def close_all(self) -> None:
        for session_id in list(self._sessions):
            self.remove(session_id)
