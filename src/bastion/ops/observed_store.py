"""A store whose every operation is timed (and, with tracing, spanned): the telemetry of whichever backend it
wraps. Built around the configured store in compose.py when metrics or tracing are on; otherwise the store is
used bare and costs nothing more."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from ..store.base import Commit, Record, Store
from ..store.errors import StoreUnavailable
from .telemetry import Telemetry

T = TypeVar("T")


class ObservedStore(Store):
    def __init__(self, inner: Store, backend: str, telemetry: Telemetry) -> None:
        self.inner = inner
        self.backend = backend
        self.metrics = telemetry.metrics
        self.tracing = telemetry.tracing

    async def _observed(self, operation: str, work: Awaitable[T]) -> T:
        if self.tracing is not None:
            attributes = {"db.system.name": self.backend, "db.operation.name": operation}
            work = self.tracing.around(f"bastion.store {operation}", attributes, work)
        started = time.perf_counter()
        failed = True
        try:
            result = await work
            failed = False
            return result
        except StoreUnavailable:
            raise
        except Exception:
            failed = False  # refused by the contract (a commit Commit.check refuses): the store itself is fine
            raise
        finally:
            if self.metrics is not None:
                self.metrics.store_operation(self.backend, operation, time.perf_counter() - started, failed)

    async def get(self, key: str) -> Record | None:
        return await self._observed("get", self.inner.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        return await self._observed("get_many", self.inner.get_many(keys))

    async def commit(self, change: Commit) -> bool:
        return await self._observed("commit", self.inner.commit(change))

    async def keys(self, prefix: str) -> list[str]:
        return await self._observed("keys", self.inner.keys(prefix))

    async def take(self, key: str) -> Record | None:
        return await self._observed("take", self.inner.take(key))

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()
