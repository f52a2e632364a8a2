"""Requests refused by middleware reach the audit trail: a middleware's denial as request.denied (each one, with
the caller, the method, the target and the reason), [limits]' refusals as request.rate_limited (sampled: a burst
is one event that counts the rest). Nothing ran behind either refusal."""

from __future__ import annotations

from bastion import Denied
from bastion.compose import build
from bastion.store import MemoryStore, keys
from tests.clients import asgi_client
from tests.mcp.conftest import build_app, modern_body, modern_headers
from tests.oauth.conftest import register, settings, tokens_for
from tests.waiting import eventually


async def events_of(store: MemoryStore, kind: str) -> list[dict]:
    records = [await store.get(name) for name in await store.keys(keys.audit_events("main"))]
    return [record for record in records if record is not None and record["type"] == kind]


async def test_denials_and_rate_limits_are_audit_events_and_nothing_behind_them_runs():
    ran: list[str] = []
    app = build_app(ran)

    @app.middleware
    async def no_crashing(call, proceed):
        if call.target == "crash":
            raise Denied("crashing is not allowed here")
        return await proceed(call)

    base = settings()
    configured = base.model_copy(update={"limits": base.limits.model_copy(update={"requests_per_minute": 3})})
    store = MemoryStore()
    surface = build(app, configured, store=store)
    await surface.lifecycle.start()
    try:
        async with asgi_client(surface) as http:
            token = (await tokens_for(http, await register(http)))["access_token"]
            headers = {"authorization": f"Bearer {token}"}

            async def call(tool: str):
                return await http.post(
                    "/mcp",
                    headers={**modern_headers("tools/call", tool), **headers},
                    json=modern_body(
                        "tools/call", {"name": tool, "arguments": {"a": 1, "b": 2} if tool == "add" else {}}
                    ),
                )

            denied = await call("crash")
            assert denied.status_code == 403 and denied.json()["error"]["message"] == "crashing is not allowed here"
            answers = [await call("add") for _ in range(6)]  # 2 more allowed this minute, then refused
            assert [a.status_code for a in answers] == [200, 200, 429, 429, 429, 429]
            assert ran.count("add") == 2

            async def recorded() -> bool:
                return bool(await events_of(store, "request.rate_limited"))

            await eventually(recorded, "the refusals in the audit trail")
    finally:
        await surface.lifecycle.stop()
    [denial] = await events_of(store, "request.denied")
    assert denial["outcome"] == "failure" and denial["subject"] == "dev:alice" and denial["request_id"]
    assert denial["details"] == {"method": "tools/call", "target": "crash", "reason": "crashing is not allowed here"}
    [limited] = await events_of(store, "request.rate_limited")  # four refusals, one event
    assert limited["details"]["target"] == "add" and limited["details"]["method"] == "tools/call"
    assert limited["details"]["unrecorded"] == 0 and limited["subject"] == "dev:alice"
