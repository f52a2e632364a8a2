"""An in-process store: for tests and single-process development. Everything is lost on restart."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

from .base import Commit, Record, Store


class MemoryStore(Store):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._data: dict[str, tuple[Record, float | None]] = {}
        self._clock = clock  # wall-clock seconds: when records expire (tests drive it)

    def _live(self, key: str) -> Record | None:
        item = self._data.get(key)
        if item is None:
            return None
        record, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        return record

    async def get(self, key: str) -> Record | None:
        record = self._live(key)
        return copy.deepcopy(record) if record is not None else None

    async def commit(self, change: Commit) -> bool:
        # No await inside: on one event loop this whole block is atomic.
        change.check()
        if any(self._live(key) is None for key in change.consume):
            return False
        if any(self._live(key) is not None for key in change.create):
            return False
        for key in (*change.consume, *change.delete):
            self._data.pop(key, None)
        for prefix in change.delete_prefix:
            for key in [k for k in self._data if k.startswith(prefix)]:
                del self._data[key]
        now = self._clock()
        for key, (record, ttl) in (*change.put.items(), *change.create.items()):
            self._data[key] = (copy.deepcopy(record), now + ttl if ttl is not None else None)
        return True

    async def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in list(self._data) if k.startswith(prefix) and self._live(k) is not None)
