"""Building the store and the bus a backend name describes.

The network backends' modules, and so their drivers, are imported here only when that backend is asked for: a
server on SQLite (or one without authentication, which opens no store) never loads them.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Store
from .bus.base import Bus

BACKENDS = ("sqlite", "memory", "postgres", "redis")


def open_store(backend: str, *, path: str | None = None, url: str | None = None, cluster: bool = False) -> Store:
    """The store for `backend`: `path` is SQLite's file, `url` a network backend's address. Network backends
    connect in start(), on the serving loop; building them opens nothing."""
    if backend == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    if backend == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(path or "bastion.db")
    if backend == "postgres":
        return _store(".postgres", "PostgresStore", _needed(backend, url))
    if backend == "redis":
        return _store(".redis", "RedisStore", _needed(backend, url), cluster=cluster)
    raise ValueError(f"unknown store backend {backend!r}: use one of {', '.join(BACKENDS)}")


def open_bus(backend: str, *, url: str | None = None, cluster: bool = False) -> Bus:
    """The bus between the parts of Bastion that share `backend`'s store: within this process for the embedded
    backends (one instance per store), through the store's server for the network ones (every instance)."""
    if backend in ("memory", "sqlite"):
        from .bus.local import LocalBus

        return LocalBus()
    if backend == "postgres":
        return _bus(".bus.postgres", "PostgresBus", _needed(backend, url))
    if backend == "redis":
        return _bus(".bus.redis", "RedisBus", _needed(backend, url), cluster=cluster)
    raise ValueError(f"unknown store backend {backend!r}: use one of {', '.join(BACKENDS)}")


def _needed(backend: str, url: str | None) -> str:
    if not url:
        raise ValueError(f"the {backend} backend needs a URL")
    return url


def _store(module: str, name: str, *args: Any, **kwargs: Any) -> Store:
    built = _built(module, name, *args, **kwargs)
    if not isinstance(built, Store):
        raise TypeError(f"{module}.{name} is not a Store")
    return built


def _bus(module: str, name: str, *args: Any, **kwargs: Any) -> Bus:
    built = _built(module, name, *args, **kwargs)
    if not isinstance(built, Bus):
        raise TypeError(f"{module}.{name} is not a Bus")
    return built


def _built(module: str, name: str, *args: Any, **kwargs: Any) -> object:
    """`name` from `module` (relative to this package), imported now and not before, built with the arguments."""
    made: object = getattr(importlib.import_module(module, __package__), name)(*args, **kwargs)
    return made
