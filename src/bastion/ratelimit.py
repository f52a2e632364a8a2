"""A limit per key (a client address for /register, a caller and tool for [limits]) in fixed windows, counted in
the store: every instance on one store shares it.

The n-th request for a key in a window creates the record `ratelimit:<sha256(key)>:<window>:<n>`
(store/keys.py); a request is allowed if it creates one of the slots 0 .. limit-1. Creating is exact across
instances (of concurrent creates of one key exactly one succeeds), where a single counter rewritten with
consume + put would not be: consume checks that a record exists, not which value it holds, so two instances
that both read 3 would both write 4. Each slot expires with its window.

A request tries the slots from the first this instance has not yet seen taken, so a key past its limit
costs this instance no store round trip until the window ends, and one under it costs one, plus one per slot
other instances took meanwhile. Store faults (StoreUnavailable) reach the caller: a 503, as for every route.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .security.crypto import token_hash
from .store import Commit, Store, keys


class RateLimiter:
    def __init__(
        self,
        store: Store,
        limit: int,
        window_seconds: float,
        *,
        clock: Callable[[], float] = time.time,
        max_hints: int = 10_000,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a rate limit needs a limit of at least 1 and a window longer than zero")
        self.store = store
        self.limit = limit
        self.window = window_seconds
        self.max_hints = max_hints
        # Wall-clock seconds: every instance must agree which window it is (keep clocks in step, as for TTLs).
        self._clock = clock
        # (key hash, window) -> the first slot this instance has not seen taken (an optimisation only).
        self._next: dict[tuple[str, int], int] = {}

    def _current(self) -> tuple[int, float]:
        """The current window's number and how many seconds of it are left."""
        now = self._clock()
        number = math.floor(now / self.window)
        return number, (number + 1) * self.window - now

    def retry_after(self) -> int:
        """Whole seconds until the current window ends (at least 1): when a refused key may count again."""
        return max(1, math.ceil(self._current()[1]))

    async def allow(self, key: str) -> bool:
        """Count one request for `key`; False if it is over the limit in this window (nothing counted)."""
        window, left = self._current()
        hashed = token_hash(key)
        hint = (hashed, window)
        slot = self._next.get(hint, 0)
        while slot < self.limit:
            taken = await self.store.commit(Commit().add(keys.rate_limit(hashed, window, slot), {}, left))
            slot += 1
            if taken:
                self._remember(hint, slot)
                return True
        self._remember(hint, slot)
        return False

    def _remember(self, hint: tuple[str, int], slot: int) -> None:
        if hint not in self._next and len(self._next) >= self.max_hints:
            # Forget past windows; if this window alone fills the map, forget it all (hints only save round trips).
            for stale in [key for key in self._next if key[1] != hint[1]]:
                del self._next[stale]
            if len(self._next) >= self.max_hints:
                self._next.clear()
        self._next[hint] = slot
