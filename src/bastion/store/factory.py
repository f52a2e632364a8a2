"""Building the store and the bus a backend name describes.

The network backends' modules, and so their drivers, are imported here only when that backend is asked for: a
server on SQLite (or one without authentication, which opens no store) never loads them.
"""

from __future__ import annotations

from .base import Store
from .bus.base import Bus

BACKENDS = ("sqlite", "memory", "postgres", "redis")


def open_store(backend: str, *, path: str | None = None, url: str | None = None, cluster: bool | None = None) -> Store:
    """The store for `backend`: `path` is SQLite's file, `url` a network backend's address. Network backends
    connect in start(), on the serving loop; building them opens nothing."""
    if backend == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if backend == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(path or "bastion.db")
    if backend == "postgres":
        from .postgres import PostgresStore

        return PostgresStore(_needed(backend, url))
    if backend == "redis":
        from .redis import RedisStore

        return RedisStore(_needed(backend, url), cluster=cluster)
    raise ValueError(f"unknown store backend {backend!r}: use one of {', '.join(BACKENDS)}")


def open_bus(backend: str, *, path: str | None = None, url: str | None = None, cluster: bool | None = None) -> Bus:
    """The bus between the parts of Bastion that share `backend`'s store: through the file for SQLite given its
    `path` (every process on it: --workers), within this process for memory (or SQLite without a path), through
    the store's server for the network ones (every instance)."""
    if backend == "sqlite" and path:
        from .bus.sqlite import SQLiteBus

        return SQLiteBus(path)
    if backend in ("memory", "sqlite"):
        from .bus.local import LocalBus

        return LocalBus()
    if backend == "postgres":
        from .bus.postgres import PostgresBus

        return PostgresBus(_needed(backend, url))
    if backend == "redis":
        from .bus.redis import RedisBus

        return RedisBus(_needed(backend, url), cluster=cluster)
    raise ValueError(f"unknown store backend {backend!r}: use one of {', '.join(BACKENDS)}")


def _needed(backend: str, url: str | None) -> str:
    if not url:
        raise ValueError(f"the {backend} backend needs a URL")
    return url
