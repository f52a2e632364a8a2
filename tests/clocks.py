"""A clock a test moves by hand, for code that takes one (`clock=`, `now=`) instead of reading time itself."""

from __future__ import annotations

# A fixed wall-clock start (November 2023): far from zero, so "now - 600" is still a plausible time.
WALL_START = 1_700_000_000.0


class Clock:
    """`clock()` reads it; `clock.now += 61` moves it. It never moves on its own."""

    def __init__(self, now: float = WALL_START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
