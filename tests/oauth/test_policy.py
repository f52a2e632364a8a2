"""Per-tool authorization: a caller sees only what its scopes allow, and a call without them gets 403 with a
step-up challenge naming every scope needed (never offline_access)."""

import httpx
import pytest

from bastion import App
from bastion.settings import Settings
from tests.mcp.conftest import modern_body, modern_headers

from .conftest import BASE, register, tokens_for


def policy_app() -> App:
    app = App("policy")

    @app.tool
    def read_notes() -> str:
        """Open to every signed-in caller."""
        return "notes"

    @app.tool(scopes=["notes:admin"])
    def delete_notes() -> str:
        """Needs notes:admin."""
        return "deleted"

    @app.tool(scopes=["offline_access", "notes:admin"])
    def archive_notes() -> str:
        """Asks for offline_access too, which never appears in a challenge."""
        return "archived"

    @app.tool
    def secret_report() -> str:
        """Protected by a settings glob."""
        return "report"

    @app.resource("notes://private", scopes=["notes:admin"])
    def private() -> str:
        return "private"

    @app.prompt(scopes=["notes:admin"])
    def admin_prompt() -> str:
        """An admin prompt."""
        return "hi"

    return app


@pytest.fixture
async def client():
    settings = Settings.load(
        env={},
        store={"backend": "memory"},
        authorization_server={"enabled": True, "dev_login": True},
        policy={"tools": {"secret_*": ["reports:read"]}},
    )
    asgi = policy_app().asgi(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as http:
        yield http


async def rpc(client, bearer: str, method: str, params: dict | None = None, name: str | None = None):
    headers = {**modern_headers(method, name), "authorization": f"Bearer {bearer}"}
    return await client.post("/mcp", headers=headers, json=modern_body(method, params))


async def test_callers_see_and_use_only_what_their_scopes_allow(client):
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert {"mcp", "notes:admin", "reports:read", "offline_access"} <= set(metadata["scopes_supported"])
    registered = await register(client)
    narrow = (await tokens_for(client, registered, scope="mcp"))["access_token"]
    listed = (await rpc(client, narrow, "tools/list")).json()["result"]["tools"]
    assert [t["name"] for t in listed] == ["read_notes"]

    refused = await rpc(client, narrow, "tools/call", {"name": "delete_notes"}, "delete_notes")
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="notes:admin", '
        f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"'
    )
    assert "x-bastion-needed-scopes" not in refused.headers
    assert refused.json()["error"]["data"] == {"scopes": ["notes:admin"]}

    glob = await rpc(client, narrow, "tools/call", {"name": "secret_report"}, "secret_report")
    assert glob.status_code == 403 and 'scope="reports:read"' in glob.headers["www-authenticate"]
    archive = await rpc(client, narrow, "tools/call", {"name": "archive_notes"}, "archive_notes")
    assert 'scope="notes:admin"' in archive.headers["www-authenticate"]
    assert "offline_access" not in archive.headers["www-authenticate"]

    assert (
        await rpc(client, narrow, "resources/read", {"uri": "notes://private"}, "notes://private")
    ).status_code == 403
    assert (await rpc(client, narrow, "resources/list")).json()["result"]["resources"] == []
    assert (await rpc(client, narrow, "prompts/get", {"name": "admin_prompt"}, "admin_prompt")).status_code == 403
    assert (await rpc(client, narrow, "prompts/list")).json()["result"]["prompts"] == []


async def test_a_wider_token_sees_and_uses_everything(client):
    registered = await register(client)
    wide = (await tokens_for(client, registered, scope="mcp notes:admin reports:read offline_access"))["access_token"]
    names = {t["name"] for t in (await rpc(client, wide, "tools/list")).json()["result"]["tools"]}
    assert names == {"read_notes", "delete_notes", "archive_notes", "secret_report"}
    called = await rpc(client, wide, "tools/call", {"name": "delete_notes"}, "delete_notes")
    assert called.json()["result"]["content"][0]["text"] == "deleted"


async def test_without_authentication_nothing_is_hidden():
    asgi = policy_app().asgi(Settings.load(env={}, policy={"tools": {"secret_*": ["reports:read"]}}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as client:
        listed = await client.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
        assert len(listed.json()["result"]["tools"]) == 4
