"""read_bounded: a body is refused (413) as soon as it passes the limit, declared or counted, and the rest is
never pulled."""

from __future__ import annotations

import pytest

from bastion.security.body import (
    BadContentLength,
    BodyIncomplete,
    BodyTooLarge,
    declared_length,
    read_bounded,
    receive_chunks,
)


class Chunks:
    """An async source of `count` chunks of `size` bytes that counts how many were pulled."""

    def __init__(self, size: int, count: int) -> None:
        self.size, self.count, self.pulled = size, count, 0

    def __aiter__(self):
        return self._chunks()

    async def _chunks(self):
        for _ in range(self.count):
            self.pulled += 1
            yield b"x" * self.size


async def test_a_body_at_the_limit_is_read_whole():
    assert await read_bounded(Chunks(100, 10), 1000) == b"x" * 1000
    assert await read_bounded(Chunks(100, 10), 1000, ["1000"]) == b"x" * 1000


async def test_a_body_past_the_limit_stops_at_the_chunk_that_passes_it():
    chunks = Chunks(100, 1_000_000)
    with pytest.raises(BodyTooLarge) as raised:
        await read_bounded(chunks, 1000)
    assert raised.value.status == 413 and "1000 bytes" in str(raised.value)
    assert chunks.pulled == 11


async def test_a_declared_length_over_the_limit_is_refused_before_reading():
    chunks = Chunks(100, 1)
    with pytest.raises(BodyTooLarge):
        await read_bounded(chunks, 1000, ["1001"])
    assert chunks.pulled == 0


async def test_a_lying_declared_length_is_still_counted():
    chunks = Chunks(100, 1_000_000)
    with pytest.raises(BodyTooLarge):
        await read_bounded(chunks, 1000, ["10"])
    assert chunks.pulled == 11


@pytest.mark.parametrize("values", [["1", "1"], ["-1"], ["1e3"], [" 12"], ["0x10"], ["١٢"], ["+5"]])
def test_broken_content_lengths_are_400(values):
    with pytest.raises(BadContentLength) as raised:
        declared_length(values)
    assert raised.value.status == 400


def test_content_length_values():
    assert declared_length([]) is None
    assert declared_length(["0"]) == 0
    assert declared_length(["0042"]) == 42


async def test_receive_chunks_reads_an_asgi_body_and_notices_a_disconnect():
    messages = iter(
        [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.request", "body": b"c"}]
    )

    async def receive():
        return next(messages)

    assert await read_bounded(receive_chunks(receive), 10) == b"abc"

    async def gone():
        return {"type": "http.disconnect"}

    with pytest.raises(BodyIncomplete) as raised:
        await read_bounded(receive_chunks(gone), 10)
    assert raised.value.status == 400
