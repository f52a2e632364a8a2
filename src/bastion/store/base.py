"""The storage interface every backend gives the same guarantees for.

Records are JSON objects under string keys, each with an optional time to live. All writes go through
`commit`, which applies a whole change atomically: either every part happens or none does. A commit may
*consume* keys: it succeeds only if every one of them exists (and is not expired), and deletes them as part of
the same change. That is how one-time things (authorization codes, refresh tokens, transaction state) are
used exactly once, even when two requests race for them. A commit may also *create* keys: it succeeds only if
none of them exists (an expired record counts as absent), and writes them as part of the same change. That is how
one instance among many takes something for itself (a lease, the next slot of a counter): of many concurrent
creates of one key, exactly one commit succeeds. A commit that fails either check changes nothing.

Prefixes (`delete_prefix`, `keys`) match exactly: case-sensitive, character by character, with no wildcard in
them ("grant:a_" does not match "grant:A_" or "grant:ab").

When the backend cannot do what was asked (locked, full, unreachable, closed), a method raises
`StoreUnavailable` (store/errors.py) rather than its driver's own errors; a commit that raises it applied
nothing. The memory store never raises it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]


@dataclass
class Commit:
    """One atomic change."""

    consume: list[str] = field(default_factory=list)  # must all exist; deleted
    delete: list[str] = field(default_factory=list)  # deleted if present
    delete_prefix: list[str] = field(default_factory=list)  # every key starting with one of these, deleted
    put: dict[str, tuple[Record, float | None]] = field(default_factory=dict)  # key -> (record, ttl seconds)
    create: dict[str, tuple[Record, float | None]] = field(default_factory=dict)  # must all be absent; written

    def set(self, key: str, record: Record, ttl: float | None = None) -> Commit:
        self.put[key] = (record, ttl)
        return self

    def add(self, key: str, record: Record, ttl: float | None = None) -> Commit:
        """Create `key`: the whole commit fails if it exists (and has not expired)."""
        self.create[key] = (record, ttl)
        return self

    def check(self) -> None:
        """ValueError if a key to create is also consumed, deleted (by key or prefix) or put by this commit: what
        such a commit should mean would depend on the order of its parts, which backends are free to choose."""
        for key in self.create:
            if key in self.put or key in self.consume or key in self.delete:
                raise ValueError("a key to create cannot also be consumed, deleted or put in the same commit")
            if any(key.startswith(prefix) for prefix in self.delete_prefix):
                raise ValueError("a key to create cannot also be under a prefix deleted in the same commit")


class Store(abc.ABC):
    @abc.abstractmethod
    async def get(self, key: str) -> Record | None:
        """The record, or None if absent or expired."""

    async def get_many(self, keys: Sequence[str]) -> list[Record | None]:
        """`get` of each key, in order. Not a snapshot: a commit may land between two of them. Backends that can
        answer in one round trip do (a hot path reads a refresh token and its grant together)."""
        return [await self.get(key) for key in keys]

    @abc.abstractmethod
    async def commit(self, change: Commit) -> bool:
        """Apply `change` atomically; False, with nothing changed, if a key to consume was missing or a key to
        create was present. ValueError (nothing changed) for a commit `Commit.check` refuses."""

    @abc.abstractmethod
    async def keys(self, prefix: str) -> list[str]:
        """Live keys starting with `prefix` (for administration and tests, not hot paths)."""

    async def take(self, key: str) -> Record | None:
        """Read and consume one record atomically: the record for exactly one caller, None for the rest."""
        while True:
            record = await self.get(key)
            if record is None:
                return None
            if await self.commit(Commit(consume=[key])):
                return record

    async def start(self) -> None:  # noqa: B027 - embedded backends are ready once built
        """Connect (network backends: open the pool, run migrations); StoreUnavailable if the store cannot be
        reached. Called once, before the first request (the server's start-up), on the event loop that serves."""

    async def close(self) -> None:  # noqa: B027 - backends without resources need nothing here
        """Release connections and threads."""
