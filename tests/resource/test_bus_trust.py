"""The bearer gate remembers a verification only while the bus that would announce its revocation works."""

from __future__ import annotations

from typing import Any

import httpx

from bastion.principal import Principal
from bastion.resource.bearer import BearerGate
from bastion.resource.challenge import Challenges
from bastion.store.bus import LocalBus


class Bus(LocalBus):
    """A bus the test takes down and brings back (a network bus's healthy flag and reconnection count)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = True

    @property
    def healthy(self) -> bool:
        return self.up


class Tool:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ran"})


async def test_nothing_is_remembered_while_the_bus_is_down_nor_from_before_it_went_down():
    checks: list[str] = []

    async def verify(token: str, resource: str) -> Principal | None:
        checks.append(token)
        return Principal(subject="dev:alice", client_id="c1", resource=resource)

    bus, tool = Bus(), Tool()
    gate = BearerGate(tool, verify, Challenges(None, "/mcp"), bus)
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:

        async def call() -> None:
            response = await http.get("/mcp", headers={"authorization": "Bearer t1"})
            assert response.status_code == 200 and response.text == "ran"

        await call()
        await call()
        assert len(checks) == 1  # remembered while the bus works
        bus.up = False
        await call()
        await call()
        assert len(checks) == 3  # every request checked while revocations could be missed
        bus.up = True
        bus.generation += 1  # reconnected: what was published meanwhile never arrived
        await call()
        assert len(checks) == 4  # nothing from before the outage is trusted
        await call()
        assert len(checks) == 4 and tool.calls == 6
