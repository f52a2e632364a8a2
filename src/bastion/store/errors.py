"""The store's one exception: the backend could not do what was asked, right now.

Callers answer it with "try again later" (503 temporarily_unavailable), never with a verdict: a store that
cannot be read has not said a token is invalid, and one that cannot be written has not refused a change. Its
message names the backend's condition ("database is locked"), never a key or a record.
"""

from __future__ import annotations


class StoreUnavailable(Exception):
    """Locked beyond the busy timeout, full, unreadable, damaged or closed. Nothing of the change was applied."""
