"""The expiry sweep: every few minutes each instance removes the registrations past their expiry (revoking
their grants) and records `client.expired` for each. Until a sweep comes, an expired client is refused anyway
(AuthorizationServer.client); the store drops a registration that no sweep reached a week after its expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from ..ops.sampled import SampledLog
from ..store import StoreUnavailable
from .operations import Administration

log = SampledLog(logging.getLogger("bastion.admin"), period=600.0)
EVERY_SECONDS = 300.0


class ExpirySweep:
    def __init__(
        self, administration: Administration, every: float = EVERY_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        self.administration = administration
        self.every = every
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> list[str]:
        """One sweep now: the client ids it removed."""
        return await self.administration.expire_clients(self.clock())

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bastion-expiry")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            # Instances started together do not sweep together.
            await asyncio.sleep(self.every * random.uniform(0.5, 1.5))
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                log.warning("expired clients not swept: %s", exc)
            except Exception:
                logging.getLogger("bastion.admin").exception("the expiry sweep failed")
