"""A request body streamed without a declared length, that counts how much of it the server pulled: a body
bounded while streaming must stop pulling soon after its limit."""

from __future__ import annotations

from collections.abc import AsyncIterator


class CountingBody:
    """`start`, then `padding` bytes of `filler` in chunks of `chunk` bytes; `pulled` counts the chunks read."""

    def __init__(self, start: bytes, padding: int, chunk: int, filler: bytes = b" ") -> None:
        self.start, self.padding, self.chunk, self.filler = start, padding, chunk, filler
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.pulled += 1
        yield self.start
        for _ in range(self.padding // self.chunk):
            self.pulled += 1
            yield self.filler * self.chunk
