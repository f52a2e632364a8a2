"""A browser signed in to the account and admin pages: a random id in a __Host- cookie (HttpOnly, Secure,
SameSite=Lax), and in the store only its hash, with the subject, how they signed in, and when.

The sign-in itself is an authorization transaction like any other (oauth/transactions.py), opened for the
account pages instead of for a client: the same sign-in methods, the same one-time completion. Every action a
page offers is a POST (in the API, a DELETE) carrying the session's CSRF token, compared in constant time; a
request from another site is refused before that (Sec-Fetch-Site). The token is derived from the session id (a
hash of it with a purpose), so every tab of one session shows the same one, and no other site can know it.
Signing out deletes the record, so a copied cookie stops working everywhere at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..security.cookies import clear_cookie, host_cookie, read_host_cookie
from ..security.crypto import new_token, same, token_hash
from ..store import Commit, Store, keys

COOKIE = "bastion-account"


@dataclass(frozen=True)
class AccountSession:
    key: str  # its record's storage key
    subject: str
    method: str | None
    created_at: float
    csrf: str  # what this session's forms carry

    def csrf_matches(self, submitted: str | None) -> bool:
        return bool(submitted) and same(submitted or "", self.csrf)


def _csrf(session_id: str) -> str:
    return token_hash(f"account-csrf\0{session_id}")


class AccountSessions:
    def __init__(self, store: Store, seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.seconds = seconds
        self.clock = clock

    async def open(self, subject: str, method: str | None) -> str:
        """A new session for `subject`; the Set-Cookie header value that gives it to the browser."""
        session_id = new_token()
        record = {"subject": subject, "method": method, "created_at": self.clock()}
        await self.store.commit(Commit().set(keys.account_session(token_hash(session_id)), record, self.seconds))
        return host_cookie(COOKIE, session_id, int(self.seconds))

    async def find(self, scope: Mapping[str, Any]) -> AccountSession | None:
        """The session this request's cookie names, if it is live (StoreUnavailable if the store cannot say)."""
        session_id = read_host_cookie(scope, COOKIE)
        if not session_id:
            return None
        key = keys.account_session(token_hash(session_id))
        record = await self.store.get(key)
        if record is None:
            return None
        return AccountSession(key, record["subject"], record.get("method"), record["created_at"], _csrf(session_id))

    async def close(self, session: AccountSession) -> str:
        """Sign out: the record goes (the cookie is worthless everywhere); the Set-Cookie value clearing it."""
        await self.store.commit(Commit(delete=[session.key]))
        return clear_cookie(COOKIE)
