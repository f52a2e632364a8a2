"""Where state lives: one small key-value interface with TTLs and atomic commits, and its backends.

Imports nothing else of Bastion's. See docs/storage.md for every record kept in it. The network backends
(postgres, redis) are imported only by open_store / open_bus, when configured (factory.py).
"""

from .base import Commit, Store
from .errors import StoreUnavailable
from .factory import open_bus, open_store
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["Commit", "MemoryStore", "SQLiteStore", "Store", "StoreUnavailable", "open_bus", "open_store"]
