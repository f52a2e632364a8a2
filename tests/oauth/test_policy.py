"""Per-tool authorization: a caller sees only what its scopes allow, and a call without them gets 403 with a
step-up challenge naming every scope needed (never offline_access)."""

import pytest

from bastion import App
from bastion.mcp.errors import FORBIDDEN
from bastion.store import keys
from tests.answers import bearer_challenge, jsonrpc_error
from tests.clients import asgi_client, local_settings, store_of
from tests.mcp.conftest import modern_body, modern_headers
from tests.waiting import eventually

from .conftest import BASE, register, tokens_for

POLICY = {"tools": {"secret_*": ["reports:read"]}}


def policy_app(ran: list[str]) -> App:
    """Every tool, resource and prompt notes in `ran` that it ran."""
    app = App("policy")

    @app.tool
    def read_notes() -> str:
        """Open to every signed-in caller."""
        ran.append("read_notes")
        return "notes"

    @app.tool(scopes=["notes:admin"])
    def delete_notes() -> str:
        """Needs notes:admin."""
        ran.append("delete_notes")
        return "deleted"

    @app.tool(scopes=["offline_access", "notes:admin"])
    def archive_notes() -> str:
        """Asks for offline_access too, which never appears in a challenge."""
        ran.append("archive_notes")
        return "archived"

    @app.tool
    def secret_report() -> str:
        """Protected by a settings glob."""
        ran.append("secret_report")
        return "report"

    @app.resource("notes://private", scopes=["notes:admin"])
    def private() -> str:
        ran.append("private")
        return "private"

    @app.prompt(scopes=["notes:admin"])
    def admin_prompt() -> str:
        """An admin prompt."""
        ran.append("admin_prompt")
        return "hi"

    return app


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
async def client(ran):
    settings = local_settings(
        store={"backend": "memory"}, authorization_server={"enabled": True, "dev_login": True}, policy=POLICY
    )
    async with asgi_client(policy_app(ran), settings) as http:
        yield http


async def rpc(client, bearer: str, method: str, params: dict | None = None, name: str | None = None):
    headers = {**modern_headers(method, name), "authorization": f"Bearer {bearer}"}
    return await client.post("/mcp", headers=headers, json=modern_body(method, params))


async def test_callers_see_and_use_only_what_their_scopes_allow(client, ran):
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert {"mcp", "notes:admin", "reports:read", "offline_access"} <= set(metadata["scopes_supported"])
    registered = await register(client)
    narrow = (await tokens_for(client, registered, scope="mcp"))["access_token"]
    listed = (await rpc(client, narrow, "tools/list")).json()["result"]["tools"]
    assert [t["name"] for t in listed] == ["read_notes"]

    refused = await rpc(client, narrow, "tools/call", {"name": "delete_notes"}, "delete_notes")
    assert bearer_challenge(refused, 403, "insufficient_scope") == (
        f'Bearer error="insufficient_scope", scope="notes:admin", '
        f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"'
    )
    assert "x-bastion-needed-scopes" not in refused.headers
    assert jsonrpc_error(refused, 403, FORBIDDEN)["data"] == {"scopes": ["notes:admin"]}

    glob = await rpc(client, narrow, "tools/call", {"name": "secret_report"}, "secret_report")
    assert 'scope="reports:read"' in bearer_challenge(glob, 403, "insufficient_scope")
    archive = await rpc(client, narrow, "tools/call", {"name": "archive_notes"}, "archive_notes")
    assert 'scope="notes:admin"' in bearer_challenge(archive, 403, "insufficient_scope")
    assert "offline_access" not in archive.headers["www-authenticate"]

    private = await rpc(client, narrow, "resources/read", {"uri": "notes://private"}, "notes://private")
    assert 'scope="notes:admin"' in bearer_challenge(private, 403, "insufficient_scope")
    assert (await rpc(client, narrow, "resources/list")).json()["result"]["resources"] == []
    prompt = await rpc(client, narrow, "prompts/get", {"name": "admin_prompt"}, "admin_prompt")
    assert 'scope="notes:admin"' in bearer_challenge(prompt, 403, "insufficient_scope")
    assert (await rpc(client, narrow, "prompts/list")).json()["result"]["prompts"] == []
    assert ran == []  # every refusal came before the tool, resource or prompt ran


async def test_a_wider_token_sees_and_uses_everything(client, ran):
    registered = await register(client)
    wide = (await tokens_for(client, registered, scope="mcp notes:admin reports:read offline_access"))["access_token"]
    names = {t["name"] for t in (await rpc(client, wide, "tools/list")).json()["result"]["tools"]}
    assert names == {"read_notes", "delete_notes", "archive_notes", "secret_report"}
    called = await rpc(client, wide, "tools/call", {"name": "delete_notes"}, "delete_notes")
    assert called.json()["result"]["content"][0]["text"] == "deleted"
    assert ran == ["delete_notes"]


async def test_without_authentication_nothing_is_hidden():
    async with asgi_client(policy_app([]), local_settings(policy=POLICY)) as client:
        listed = await client.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
        assert len(listed.json()["result"]["tools"]) == 4


async def test_a_refused_step_up_is_an_audit_event_naming_the_caller_and_the_scopes(client, ran):
    registered = await register(client)
    tokens = await tokens_for(client, registered, scope="mcp")
    refused = await rpc(client, tokens["access_token"], "tools/call", {"name": "delete_notes"}, "delete_notes")
    assert refused.status_code == 403 and ran == []
    store = store_of(client)

    async def stepped() -> list[dict]:
        found = [await store.get(k) for k in await store.keys(keys.audit_events("main"))]
        return [r for r in found if r and r["type"] == "stepup.refused"]

    async def recorded() -> bool:
        return bool(await stepped())

    await eventually(recorded, "the refused step-up recorded")
    [event] = await stepped()
    assert (event["subject"], event["client_id"]) == ("dev:alice", registered["client_id"])
    assert event["details"] == {"needed": "notes:admin"} and event["outcome"] == "failure"
    assert event["request_id"] == refused.headers["x-request-id"] and event["client_addr"] == "127.0.0.1"
