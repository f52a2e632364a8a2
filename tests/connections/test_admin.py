"""Administrators see every user's connected accounts and disconnect any (page and API), each an audit event
naming them; anyone else is refused and nothing changes."""

from __future__ import annotations

import pytest

from tests.clients import asgi_client, records
from tests.connections.flow import (
    CSRF,
    SECRET_ENV,
    app_for,
    bastion_token,
    connected_settings,
    modern_call,
    person,
    walk_link,
)
from tests.slack_mock import slack_server
from tests.waiting import eventually

ADMIN = "dev:root"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "s3cret")


async def test_an_admin_lists_and_disconnects_a_users_account():
    with slack_server("s3cret") as (slack, slack_base):
        settings = connected_settings(slack_base)
        settings = settings.model_copy(update={"admin": settings.admin.model_copy(update={"subjects": [ADMIN]})})
        async with asgi_client(app_for(slack_base), settings) as client:
            auth = await bastion_token(client, "ada")
            first = await modern_call(client, auth, "post_message", arguments={"text": "x"})
            await walk_link(
                await person(client, "ada"),
                first["result"]["inputRequests"]["connect:slack"]["params"]["url"],
                slack_base,
            )
            [token] = slack.tokens

            mallory = await person(client, "mallory", "/admin")
            assert (await mallory.get("/admin/api/connections")).status_code == 403
            before = await records(client, "connected:")
            session = (await mallory.get("/admin/api/session")).status_code
            assert session == 403
            refused = await client.delete(
                "/admin/api/users/dev:ada/connections/slack", headers={**mallory.headers, "x-csrf-token": "x"}
            )
            assert refused.status_code == 403 and await records(client, "connected:") == before

            root = await person(client, "root", "/admin")
            page = await root.get("/admin")
            assert "Connected accounts (1)" in page.text and "U0ADA in Acme" in page.text and token not in page.text
            listed = (await root.get("/admin/api/connections?user=dev:ada")).json()["connections"]
            assert [(c["subject"], c["connection"], c["account"]) for c in listed] == [
                ("dev:ada", "slack", "U0ADA in Acme")
            ]
            assert token not in str(listed)
            csrf = (await root.get("/admin/api/session")).json()["csrf_token"]
            no_csrf = await client.delete("/admin/api/users/dev:ada/connections/slack", headers=root.headers)
            assert no_csrf.status_code == 403 and await records(client, "connected:") == before
            done = await client.delete(
                "/admin/api/users/dev:ada/connections/slack", headers={**root.headers, "x-csrf-token": csrf}
            )
            assert done.status_code == 200 and done.json() == {
                "subject": "dev:ada",
                "connection": "slack",
                "revoked_at_provider": True,
            }
            assert slack.revoked == [token] and await records(client, "connected:") == {}
            gone = await client.delete(
                "/admin/api/users/dev:ada/connections/slack", headers={**root.headers, "x-csrf-token": csrf}
            )
            assert gone.status_code == 404
            form = await root.post(
                "/admin/connections/disconnect",
                {"csrf_token": CSRF.search(page.text).group(1), "subject": "dev:ada", "connection": "slack"},
            )
            assert form.status_code == 404

            async def recorded() -> bool:
                events = (await records(client, "audit:")).values()
                return any(
                    e["type"] == "connection.disconnected" and e["details"].get("by") == "admin:dev:root"
                    for e in events
                )

            await eventually(recorded, "the admin's disconnect in the audit trail")
