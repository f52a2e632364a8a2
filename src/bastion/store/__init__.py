"""Where state lives: one small key-value interface with TTLs and atomic commits, and its backends.

Imports nothing else of Bastion's. See docs/storage.md for every record kept in it.
"""

from .base import Commit, Store
from .errors import StoreUnavailable
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["Commit", "MemoryStore", "SQLiteStore", "Store", "StoreUnavailable", "open_store"]


def open_store(backend: str, path: str | None = None) -> Store:
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        return SQLiteStore(path or "bastion.db")
    raise ValueError(f"unknown store backend {backend!r}: use 'sqlite' or 'memory'")
