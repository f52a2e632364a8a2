"""The bearer gate's remembered verifications (the fast path every authenticated call takes) decide nothing
that a fresh check would not: a remembered header sent twice is still a bad request, another Host is checked
again, and a header remembered as valid is only trusted until its principal expires."""

from __future__ import annotations

from typing import Any

import httpx

from bastion.principal import Principal
from bastion.resource.bearer import BearerGate
from bastion.resource.challenge import Challenges
from bastion.store.bus import LocalBus


class Tool:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ran"})


def gate_with(checks: list[tuple[str, str]], tool: Tool, expires_at: float | None = None) -> BearerGate:
    async def verify(token: str, resource: str) -> Principal | None:
        checks.append((token, resource))
        if token != "good":
            return None
        return Principal(subject="dev:alice", client_id="c1", resource=resource, expires_at=expires_at)

    return BearerGate(tool, verify, Challenges(None, "/mcp"), LocalBus())


async def test_a_remembered_header_sent_twice_is_refused_and_the_tool_does_not_run():
    checks: list[tuple[str, str]] = []
    tool = Tool()
    transport = httpx.ASGITransport(app=gate_with(checks, tool))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        assert (await http.get("/mcp", headers={"authorization": "Bearer good"})).status_code == 200
        twice = [("authorization", "Bearer good"), ("authorization", "Bearer good")]
        response = await http.get("/mcp", headers=twice)
        assert response.status_code == 400
        assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert tool.calls == 1 and len(checks) == 1


async def test_another_host_is_checked_again_for_its_own_resource():
    checks: list[tuple[str, str]] = []
    tool = Tool()
    transport = httpx.ASGITransport(app=gate_with(checks, tool))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        for host in ("127.0.0.1:8000", "127.0.0.1:8000", "localhost:8000"):
            response = await http.get("/mcp", headers={"authorization": "Bearer good", "host": host})
            assert response.status_code == 200
    assert checks == [("good", "http://127.0.0.1:8000/mcp"), ("good", "http://localhost:8000/mcp")]
    assert tool.calls == 3


async def test_a_refused_token_is_never_remembered():
    checks: list[tuple[str, str]] = []
    tool = Tool()
    transport = httpx.ASGITransport(app=gate_with(checks, tool))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        for _ in range(2):
            response = await http.get("/mcp", headers={"authorization": "Bearer bad"})
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert len(checks) == 2 and tool.calls == 0


async def test_a_principal_past_its_expiry_is_checked_again():
    checks: list[tuple[str, str]] = []
    tool = Tool()
    # Already expired when verified: remembered until then at most, so never used again.
    transport = httpx.ASGITransport(app=gate_with(checks, tool, expires_at=1.0))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        for _ in range(2):
            assert (await http.get("/mcp", headers={"authorization": "Bearer good"})).status_code == 200
    assert len(checks) == 2
