"""tools/list is cached, and the cache must follow what the answer depends on: the registered tools (their
definitions and scopes, not only their names) and, per request, the caller's scopes."""

import dataclasses
from dataclasses import dataclass

import pytest

from bastion import App
from bastion.mcp.exchange import Exchange
from bastion.mcp.policy import InsufficientScope
from tests.clients import local_settings

from .conftest import modern_body, modern_headers


@dataclass(frozen=True)
class Caller:
    subject: str
    scopes: tuple[str, ...]


NARROW = Caller("alice", ("mcp",))
WIDE = Caller("bob", ("mcp", "admin"))


def scoped_app() -> tuple[App, list[str]]:
    app = App("lists")
    ran: list[str] = []

    @app.tool
    def read() -> str:
        """Open to everyone."""
        ran.append("read")
        return "r"

    @app.tool(scopes=["admin"])
    def wipe() -> str:
        """Admins only."""
        ran.append("wipe")
        return "w"

    return app, ran


async def listed(server, principal=None, modern=True) -> dict[str, dict]:
    ex = Exchange(1, "tools/list", "2026-07-28" if modern else "2025-11-25", modern, principal=principal)
    return {t["name"]: t for t in (await server.handle(ex, {}))["tools"]}


async def test_replacing_a_tool_under_the_same_name_shows_the_new_definition():
    app, _ = scoped_app()
    server = app.server(local_settings())
    assert (await listed(server))["wipe"]["description"] == "Admins only."

    # The last tool, replaced: the names, and their order, are exactly as before.
    app.remove_tool("wipe")

    @app.tool(name="wipe", description="Now with a new description.", scopes=["admin"])
    def wipe_v2(limit: int) -> str:
        return "w2"

    tools = await listed(server)
    assert list(tools) == ["read", "wipe"]
    assert tools["wipe"]["description"] == "Now with a new description."
    assert tools["wipe"]["inputSchema"]["required"] == ["limit"]


async def test_a_tool_swapped_into_the_table_directly_is_seen():
    app, _ = scoped_app()
    server = app.server(local_settings())
    await listed(server)
    old = app.registry.tools["read"]
    app.registry.tools["read"] = dataclasses.replace(old, description="swapped in place of the old object")
    assert (await listed(server))["read"]["description"] == "swapped in place of the old object"


async def test_a_tool_cannot_change_in_place():
    app, _ = scoped_app()
    with pytest.raises(dataclasses.FrozenInstanceError):
        app.registry.tools["read"].description = "sneaky"  # type: ignore[misc]


async def test_new_scopes_under_the_same_name_change_who_sees_the_tool():
    app, ran = scoped_app()
    server = app.server(local_settings())
    assert list(await listed(server, NARROW)) == ["read"]

    app.remove_tool("wipe")

    @app.tool(name="wipe")
    def wipe_for_everyone() -> str:
        return "w"

    assert list(await listed(server, NARROW)) == ["read", "wipe"]

    # And back: the admin-only tool disappears again from the narrow caller's list, and its call is refused.
    app.remove_tool("wipe")

    @app.tool(name="wipe", scopes=["admin"])
    def wipe_for_admins() -> str:
        ran.append("wipe")
        return "w"

    assert list(await listed(server, NARROW)) == ["read"]
    call = Exchange(2, "tools/call", "2026-07-28", True, principal=NARROW)
    with pytest.raises(InsufficientScope):
        await server.handle(call, {"name": "wipe"})
    assert ran == []  # refused before anything ran


@pytest.mark.parametrize("modern", [True, False])
async def test_callers_with_different_scopes_each_see_their_own_list(modern):
    app, _ = scoped_app()
    server = app.server(local_settings())
    # Interleaved, each order: whichever caller fills the cache first, the other never gets its view.
    for caller in (WIDE, NARROW, WIDE, NARROW, None, NARROW):
        names = list(await listed(server, caller, modern))
        assert names == (["read"] if caller is NARROW else ["read", "wipe"]), caller


async def test_policy_scopes_are_part_of_the_filter():
    app, _ = scoped_app()
    server = app.server(local_settings(policy={"tools": {"re*": ["reports:read"]}}))
    assert list(await listed(server, NARROW)) == []
    assert list(await listed(server, Caller("carol", ("reports:read", "admin")))) == ["read", "wipe"]


async def test_a_changed_list_reaches_http_clients(client, app):
    async def names_and_descriptions():
        response = await client.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
        return {t["name"]: t["description"] for t in response.json()["result"]["tools"]}

    before = await names_and_descriptions()
    assert list(before)[-1] == "ask"
    app.remove_tool("ask")

    @app.tool(name="ask", description="Asks, now documented differently.")
    def ask_again() -> str:
        return "?"

    after = await names_and_descriptions()
    assert list(after) == list(before)
    assert after["ask"] == "Asks, now documented differently."
