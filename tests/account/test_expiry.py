"""Registrations past their expiry: refused at once, then removed by the sweep with their grants revoked and a
`client.expired` audit event, exactly once however many instances sweep."""

from __future__ import annotations

import asyncio
import time

from bastion.admin.expiry import ExpirySweep
from bastion.admin.operations import Administration
from bastion.store import Commit, keys
from tests.clients import asgi_client, records, store_of
from tests.mcp.conftest import build_app, modern_body, modern_headers
from tests.oauth.conftest import authorization_server_of, register, settings, tokens_for


async def expire(store, client_id: str, when: float) -> None:
    """Make a registration one whose expiry has passed (as time would)."""
    record = await store.get(keys.client(client_id))
    await store.commit(Commit().set(keys.client(client_id), {**record, "expires_at": int(when)}))


async def test_an_expired_client_is_refused_then_swept_once_with_its_grants():
    async with asgi_client(build_app(), settings()) as client:
        app = await register(client)
        other = await register(client)
        tokens = await tokens_for(client, app)
        store = store_of(client)
        now = time.time()
        await expire(store, app["client_id"], now - 1)

        # Refused before any sweep: no new sign-in, no refresh.
        refreshed = await client.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": app["client_id"],
            },
        )
        assert refreshed.status_code == 401 and refreshed.json()["error"] == "invalid_client"

        events = []
        administration = Administration(store, authorization_server_of(client).grants, events.append)
        sweeps = [ExpirySweep(administration, clock=lambda: now) for _ in range(3)]  # three instances at once
        removed = await asyncio.gather(*(sweep.sweep() for sweep in sweeps))
        assert sorted(found for one in removed for found in one) == [app["client_id"]]
        assert [(e.type, e.client_id, e.details["grants_revoked"]) for e in events] == [
            ("client.expired", app["client_id"], 1)
        ]
        assert await store.get(keys.client(app["client_id"])) is None
        assert await store.get(keys.client(other["client_id"])) is not None
        assert all(grant["client_id"] != app["client_id"] for grant in (await records(client, "grant:")).values())
        called = await client.post(
            "/mcp",
            headers={**modern_headers("tools/call", "add"), "authorization": f"Bearer {tokens['access_token']}"},
            json=modern_body("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}),
        )
        assert called.status_code == 401
        assert await ExpirySweep(administration, clock=lambda: now).sweep() == []  # nothing left to sweep


def test_the_server_starts_the_sweep_and_stops_it():
    surface = build_app().asgi(settings())
    assert "client expiry sweep" in [name for name, _ in surface.lifecycle.startup]
    assert "client expiry sweep" in [name for name, _ in surface.lifecycle.shutdown]
