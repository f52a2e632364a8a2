import enum
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from bastion import App, Context
from bastion.mcp.context import elicitation_schema
from bastion.mcp.exchange import Exchange
from bastion.mcp.server import Server


class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


class Order(BaseModel):
    name: str = Field(description="Who orders")
    quantity: int = 1
    size: Size = Size.SMALL
    gift: bool = False
    speed: Literal["slow", "fast"] = "slow"


def test_elicitation_schema_is_flat_with_inlined_enums():
    schema = elicitation_schema(Order)
    assert schema["required"] == ["name"]
    props = schema["properties"]
    assert props["name"] == {"type": "string", "description": "Who orders"}
    assert props["quantity"] == {"type": "integer", "default": 1}
    assert props["size"] == {"type": "string", "enum": ["s", "l"], "default": "s"}
    assert props["speed"]["enum"] == ["slow", "fast"]
    assert all("$ref" not in p and "title" not in p for p in props.values())


def test_nested_forms_are_refused():
    class Address(BaseModel):
        street: str

    class Nested(BaseModel):
        address: Address

    class Either(BaseModel):
        value: int | str

    for model in (Nested, Either):
        with pytest.raises(TypeError):
            elicitation_schema(model)


def test_optional_fields_are_plain_fields_that_may_stay_empty():
    class Maybe(BaseModel):
        note: str | None = None
        count: int | None = Field(None, description="How many")

    schema = elicitation_schema(Maybe)
    assert schema["properties"] == {"note": {"type": "string"}, "count": {"type": "integer", "description": "How many"}}
    assert "required" not in schema


async def test_lists_are_paginated_with_opaque_cursors():
    app = App("many")
    for i in range(5):
        app.tool(name=f"t{i}")(lambda: "x")
    server = Server(app.registry, name="many", version="1", page_size=2)
    names: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {} if cursor is None else {"cursor": cursor}
        result = await server.handle(Exchange(1, "tools/list", "2025-11-25", False), params)
        names += [t["name"] for t in result["tools"]]
        pages += 1
        cursor = result.get("nextCursor")
        if cursor is None:
            break
    assert names == [f"t{i}" for i in range(5)] and pages == 3


async def test_hung_plain_tools_do_not_starve_the_others():
    import threading

    from bastion.mcp.server import Server

    app = App("threads")
    release = threading.Event()

    @app.tool
    def hang() -> str:
        release.wait(10)
        return "released"

    @app.tool
    def quick() -> str:
        return "quick"

    server = Server(app.registry, name="threads", version="1", tool_timeout=0.2, tool_threads=16)
    try:
        hung = [await server.handle(Exchange(i, "tools/call", "2025-11-25", False), {"name": "hang"}) for i in range(8)]
        assert all(r["isError"] for r in hung)  # each timed out for its caller
        answer = await server.handle(Exchange(99, "tools/call", "2025-11-25", False), {"name": "quick"})
        assert answer["content"][0]["text"] == "quick"
    finally:
        release.set()


async def test_tools_that_need_an_upstream_token_are_refused_clearly():
    from bastion.principal import Principal

    app = App("upstream")

    @app.tool(requires_upstream="github", upstream_scopes=["repo"])
    def issues(ctx: Context) -> str:
        return ctx.principal.upstream_token("github", ["repo"])

    server = Server(app.registry, name="upstream", version="1")

    async def call(principal):
        exchange = Exchange(1, "tools/call", "2026-07-28", True, principal=principal)
        return await server.handle(exchange, {"name": "issues"})

    anonymous = await call(None)
    assert anonymous["isError"] and "no authentication" in anonymous["content"][0]["text"]
    elsewhere = await call(Principal("corp:ada", "c1", upstream={"corp": {"access_token": "t", "scopes": []}}))
    assert elsewhere["isError"] and "did not sign in with github" in elsewhere["content"][0]["text"]
    narrow = await call(Principal("github:1", "c1", upstream={"github": {"access_token": "t", "scopes": ["read"]}}))
    assert narrow["isError"] and "repo" in narrow["content"][0]["text"]
    granted = Principal("github:1", "c1", upstream={"github": {"access_token": "gho_x", "scopes": ["repo"]}})
    assert (await call(granted))["content"][0]["text"] == "gho_x"
    assert "gho_x" not in repr(granted)
