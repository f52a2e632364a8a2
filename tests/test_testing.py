"""bastion.testing: the in-process client users test their own servers with, in every protocol revision, acting
as a given user with given scopes, answering what tools ask (elicitation, sampling, roots)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from bastion import App, Context
from bastion.testing import ClientError, TestClient

VERSIONS = ["2026-07-28", "2025-11-25", "2025-06-18"]


class Name(BaseModel):
    name: str


def notes_app() -> App:
    app = App("notes")

    @app.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @app.tool(scopes=["notes:write"])
    def delete_note(note_id: str) -> str:
        """Needs notes:write."""
        return f"deleted {note_id}"

    @app.tool
    async def who(ctx: Context) -> str:
        """Who is calling."""
        return ctx.principal.subject if ctx.principal else "nobody"

    @app.tool
    async def greet(ctx: Context) -> str:
        """Asks the user's name, then the model for a greeting."""
        await ctx.info("asking")
        await ctx.progress(1, 2)
        answer = await ctx.elicit("Your name?", Name)
        if answer.action != "accept":
            return "no name"
        said = await ctx.sample(f"Greet {answer.data.name}")
        return f"{answer.data.name}: {said['content']['text']}"

    @app.tool
    async def where(ctx: Context) -> str:
        """The client's first root."""
        return (await ctx.list_roots())[0]["uri"]

    @app.resource("notes://readme")
    def readme() -> str:
        """The readme."""
        return "hello"

    @app.prompt
    def summarize(topic: str) -> str:
        """Summarize a topic."""
        return f"Summarize {topic}"

    return app


async def elicited(params: dict) -> dict:
    assert params["message"] == "Your name?"
    return {"action": "accept", "content": {"name": "Ada"}}


def sampled(params: dict) -> dict:
    return {"role": "assistant", "content": {"type": "text", "text": "hello there"}, "model": "test"}


@pytest.mark.parametrize("version", VERSIONS)
async def test_calls_resources_and_prompts_in_every_revision(version):
    async with TestClient(notes_app(), protocol=version) as client:
        assert [tool["name"] for tool in await client.list_tools()] == ["add", "delete_note", "who", "greet", "where"]
        added = await client.call_tool("add", {"a": 2, "b": 3})
        assert added.structured == {"result": 5} and added.text == "5" and not added.is_error
        wrong = await client.call_tool("add", {"a": "x"})
        assert wrong.is_error and "Invalid arguments" in wrong.text
        assert (await client.call_tool("who")).text == "nobody"
        assert await client.read_resource("notes://readme") == [
            {"uri": "notes://readme", "mimeType": "text/plain", "text": "hello"}
        ]
        prompt = await client.get_prompt("summarize", {"topic": "MCP"})
        assert prompt["messages"][0]["content"]["text"] == "Summarize MCP"
        with pytest.raises(ClientError) as raised:
            await client.call_tool("nope")
        assert raised.value.code == -32602


@pytest.mark.parametrize("version", ["2026-07-28", "2025-11-25"])
async def test_what_a_tool_asks_is_answered_by_the_callbacks(version):
    async with TestClient(
        notes_app(), protocol=version, elicitation=elicited, sampling=sampled, roots=[{"uri": "file:///work"}]
    ) as client:
        assert (await client.call_tool("greet")).text == "Ada: hello there"
        assert (await client.call_tool("where")).text == "file:///work"
    if version == "2025-11-25":  # mid-call notifications reach a session's client
        assert {n["method"] for n in client.notifications} >= {"notifications/message", "notifications/progress"}


async def test_without_a_callback_the_client_lacks_the_capability():
    async with TestClient(notes_app()) as client:  # 2026-07-28: the request is refused, naming what it lacks
        with pytest.raises(ClientError) as raised:
            await client.call_tool("greet")
        assert raised.value.code == -32021
        assert raised.value.data == {"requiredCapabilities": {"elicitation": {"form": {}}}}
    async with TestClient(notes_app(), protocol="2025-11-25") as client:  # a session: the tool is told
        refused = await client.call_tool("greet")
        assert refused.is_error and "does not support elicitation" in refused.text


@pytest.mark.parametrize("version", VERSIONS)
async def test_acting_as_a_user_with_scopes(version):
    app = notes_app()
    async with TestClient(app, protocol=version, user="dev:ada", scopes=["notes:write"]) as client:
        assert "delete_note" in [tool["name"] for tool in await client.list_tools()]
        assert (await client.call_tool("delete_note", {"note_id": "n1"})).text == "deleted n1"
        assert (await client.call_tool("who")).text == "dev:ada"
    async with TestClient(app, protocol=version, user="dev:bob") as client:
        assert "delete_note" not in [tool["name"] for tool in await client.list_tools()]
        with pytest.raises(ClientError) as raised:
            await client.call_tool("delete_note", {"note_id": "n1"})
        assert raised.value.status == 403


def test_settings_with_authentication_are_refused():
    from bastion import Settings

    authenticated = Settings.load(
        env={}, store={"backend": "memory"}, authorization_server={"enabled": True, "dev_login": True}
    )
    with pytest.raises(ValueError, match="acts as the user it is given"):
        TestClient(notes_app(), settings=authenticated)
    with pytest.raises(ValueError, match="protocol '2024-01-01'"):
        TestClient(notes_app(), protocol="2024-01-01")


def asking_app() -> App:
    app = App("asks")

    @app.tool
    async def both(ctx: Context) -> str:
        """Two questions in one round, under keys of the tool's choosing."""
        name, said = await ctx.gather(ctx.elicit("Your name?", Name, key="user_name"), ctx.sample("Say hi", key="hi"))
        return f"{name.data.name}/{said['content']['text']}"

    @app.tool
    async def careful(ctx: Context) -> str:
        """Asks only what the client can answer."""
        return "can sample" if ctx.supports("sampling") else "cannot sample"

    return app


@pytest.mark.parametrize("version", ["2026-07-28", "2025-11-25"])
async def test_several_keyed_questions_in_one_round(version):
    rounds: list[str] = []

    async def named(params):
        rounds.append("elicitation")
        return {"action": "accept", "content": {"name": "Ada"}}

    def model(params):
        rounds.append("sampling")
        return {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}

    async with TestClient(asking_app(), protocol=version, elicitation=named, sampling=model) as client:
        if version == "2026-07-28":  # one input_required round naming both questions by their keys
            first = await client._call_modern("tools/call", {"name": "both", "arguments": {}})
            assert first["resultType"] == "input_required"
            assert sorted(first["inputRequests"]) == ["hi", "user_name"]
        assert (await client.call_tool("both")).text == "Ada/hi"
        assert (await client.call_tool("careful")).text == "can sample"
    assert sorted(rounds) == ["elicitation", "sampling"]
    async with TestClient(asking_app(), protocol=version) as client:
        assert (await client.call_tool("careful")).text == "cannot sample"
