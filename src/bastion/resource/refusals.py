"""Tokens an issuer recently said no to, so that the same bogus token presented again is not asked about again.

Entries are keyed by a SHA-256 of the resource and the token (never the token itself: this memory must not hold
anything a heap dump could replay), last a few seconds, and are bounded in number; all share one lifetime, so
the oldest entry is always the first to expire.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable


class RecentRefusals:
    def __init__(self, seconds: float, size: int, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.size = size
        self.clock = clock
        self._until: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def key(token: str, resource: str) -> bytes:
        # The resource is part of the key: a token refused for one Host spelling's resource may be good for another.
        return hashlib.sha256(f"{resource}\0{token}".encode()).digest()

    def refused(self, key: bytes) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until > self.clock():
            return True
        del self._until[key]
        return False

    def add(self, key: bytes) -> None:
        now = self.clock()
        while self._until and next(iter(self._until.values())) <= now:
            self._until.popitem(last=False)
        self._until[key] = now + self.seconds
        self._until.move_to_end(key)
        if len(self._until) > self.size:
            self._until.popitem(last=False)

    def __len__(self) -> int:
        return len(self._until)
