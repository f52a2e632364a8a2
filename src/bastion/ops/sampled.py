"""A log line that a flood of requests cannot multiply: the first occurrence is written, later ones within the
period are counted, and the next line written says how many were left out.

Used for warnings any caller can trigger at will (a store or an issuer that cannot answer, a rate limit): one
line per refused request would let a flood fill the disk and bury everything else in the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any


class SampledLog:
    def __init__(
        self, logger: logging.Logger, period: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.period = period
        self.clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}  # per message template: when the next line may be written
        self._left_out: dict[str, int] = {}

    def warning(self, message: str, *args: Any) -> None:
        self.log(logging.WARNING, message, *args)

    def log(self, level: int, message: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self.clock()
        with self._lock:
            if now < self._next.get(message, float("-inf")):
                self._left_out[message] = self._left_out.get(message, 0) + 1
                return
            self._next[message] = now + self.period
            left_out = self._left_out.pop(message, 0)
        if left_out:
            message += f" (and {left_out} more like it in the last {self.period:g} s)"
        self.logger.log(level, message, *args)
