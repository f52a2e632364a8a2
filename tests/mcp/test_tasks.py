"""The tasks extension (2026-07-28): a long call of a task-supporting tool becomes a task its client polls, asks
through it, cancels; other callers, and clients that did not declare the extension, are refused."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from bastion import App, Context, McpError, ToolError
from bastion.testing import ClientError, TestClient
from tests.waiting import eventually


class Answer(BaseModel):
    value: str


def tasks_app(ran: list[str]) -> App:
    app = App("tasks")

    @app.tool(task_support="optional")
    async def work(seconds: float) -> str:
        """Sleeps, then answers."""
        await asyncio.sleep(seconds)
        ran.append("work")
        return f"worked {seconds:g}"

    @app.tool(task_support="required")
    async def must_be_a_task() -> str:
        """Only as a task."""
        await asyncio.sleep(0.2)
        raise ToolError("it failed, as tools do")

    @app.tool(task_support="optional")
    async def breaks() -> str:
        """A protocol error."""
        await asyncio.sleep(0.2)
        raise McpError(-32603, "broken")

    @app.tool(task_support="optional")
    async def asks(ctx: Context) -> str:
        """Works, then asks two questions at once."""
        await asyncio.sleep(0.2)
        a, b = await ctx.gather(ctx.elicit("a?", Answer, key="a"), ctx.elicit("b?", Answer, key="b"))
        return f"{a.data.value}+{b.data.value}"

    return app


async def settled(client: TestClient, task_id: str, status: str) -> dict:
    found: dict = {}

    async def reached() -> bool:
        found.update(await client.request("tasks/get", {"taskId": task_id}))
        return found["status"] == status

    await eventually(reached, f"task {task_id} {status}")
    return found


async def answer(params: dict) -> dict:
    return {"action": "accept", "content": {"value": "x"}}


async def test_a_long_call_becomes_a_task_that_completes():
    ran: list[str] = []
    async with TestClient(tasks_app(ran), tasks=True, user="dev:ada") as client:
        quick = await client.call_tool("work", {"seconds": 0})
        assert quick.text == "worked 0" and quick.raw["resultType"] == "complete"  # at once: no task
        created = await client.request("tools/call", {"name": "work", "arguments": {"seconds": 0.3}})
        assert created["resultType"] == "task" and created["status"] == "working"
        assert {"taskId", "createdAt", "lastUpdatedAt", "ttlMs", "pollIntervalMs"} <= set(created)
        assert "result" not in created and "requestState" not in created
        done = await settled(client, created["taskId"], "completed")
        assert done["result"]["content"][0]["text"] == "worked 0.3" and done["resultType"] == "complete"
        failed_tool = await client.request("tools/call", {"name": "must_be_a_task", "arguments": {}})
        finished = await settled(client, failed_tool["taskId"], "completed")
        assert finished["result"]["isError"] is True  # a tool error is a completed task
        broken = await client.request("tools/call", {"name": "breaks", "arguments": {}})
        failed = await settled(client, broken["taskId"], "failed")
        assert failed["error"] == {"code": -32603, "message": "broken"} and "result" not in failed
    # Another caller, or no task at all: unknown, and nothing is revealed.
    async with TestClient(tasks_app(ran), tasks=True, user="dev:bob") as other:
        for task_id in (created["taskId"], "nope"):
            with pytest.raises(ClientError) as raised:
                await other.request("tasks/get", {"taskId": task_id})
            assert raised.value.code == -32602


async def test_a_task_asks_and_is_answered_one_question_at_a_time():
    async with TestClient(tasks_app([]), tasks=True, elicitation=answer) as client:
        created = await client.request("tools/call", {"name": "asks", "arguments": {}})
        waiting = await settled(client, created["taskId"], "input_required")
        assert sorted(waiting["inputRequests"]) == ["a", "b"]
        ack = await client.request(
            "tasks/update", {"taskId": created["taskId"], "inputResponses": {"a": await answer({})}}
        )
        assert ack == {"resultType": "complete", "_meta": ack["_meta"]}
        still = await client.request("tasks/get", {"taskId": created["taskId"]})
        assert still["status"] == "input_required" and list(still["inputRequests"]) == ["b"]
        await client.request("tasks/update", {"taskId": created["taskId"], "inputResponses": {"b": await answer({})}})
        done = await settled(client, created["taskId"], "completed")
        assert done["result"]["content"][0]["text"] == "x+x"


async def test_a_task_is_cancelled_and_a_finished_one_stays_as_it_is():
    ran: list[str] = []
    async with TestClient(tasks_app(ran), tasks=True) as client:
        created = await client.request("tools/call", {"name": "work", "arguments": {"seconds": 30}})
        assert (await client.request("tasks/cancel", {"taskId": created["taskId"]}))["resultType"] == "complete"
        cancelled = await client.request("tasks/get", {"taskId": created["taskId"]})
        assert cancelled["status"] == "cancelled" and "result" not in cancelled
        await client.request("tasks/cancel", {"taskId": created["taskId"]})  # again: the same ack
        assert (await client.request("tasks/get", {"taskId": created["taskId"]}))["status"] == "cancelled"
    assert ran == []  # it never finished


async def test_without_the_extension():
    async with TestClient(tasks_app([])) as client:
        assert (await client.call_tool("work", {"seconds": 0.2})).text == "worked 0.2"  # an ordinary call
        for method, params in (
            ("tools/call", {"name": "must_be_a_task", "arguments": {}}),
            ("tasks/get", {"taskId": "x"}),
        ):
            with pytest.raises(ClientError) as raised:
                await client.request(method, params)
            assert raised.value.code == -32021 and raised.value.status == 400
            assert raised.value.data == {"requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}
    async with TestClient(tasks_app([]), protocol="2025-11-25") as legacy:
        with pytest.raises(ClientError) as raised:
            await legacy.request("tasks/get", {"taskId": "x"})
        assert raised.value.code == -32602  # 2025-11-25's own tasks: an unknown one
        listed = {tool["name"]: tool for tool in await legacy.list_tools()}
        assert listed["work"]["execution"] == {"taskSupport": "optional"}


async def test_2025_11_25_tasks_asked_for_by_the_client():
    ran: list[str] = []
    app = tasks_app(ran)

    @app.tool
    def quick() -> str:
        """Never a task."""
        return "quick"

    async with TestClient(app, protocol="2025-11-25", elicitation=answer) as client:
        created = await client.request("tools/call", {"name": "work", "arguments": {"seconds": 0.2}, "task": {}})
        task = created["task"]
        assert task["status"] == "working" and {"taskId", "createdAt", "ttl", "pollInterval"} <= set(task)
        assert (await client.request("tasks/get", {"taskId": task["taskId"]}))["taskId"] == task["taskId"]
        listed = await client.request("tasks/list", {})
        assert [t["taskId"] for t in listed["tasks"]] == [task["taskId"]]
        result = await client.request("tasks/result", {"taskId": task["taskId"]})  # waits for the end
        assert result["content"][0]["text"] == "worked 0.2"
        assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
        assert (await client.request("tasks/get", {"taskId": task["taskId"]}))["status"] == "completed"
        with pytest.raises(ClientError) as finished:
            await client.request("tasks/cancel", {"taskId": task["taskId"]})
        assert finished.value.code == -32602  # a finished task cannot be cancelled
        broken = (await client.request("tools/call", {"name": "breaks", "arguments": {}, "task": {}}))["task"]
        with pytest.raises(ClientError) as failed:
            await client.request("tasks/result", {"taskId": broken["taskId"]})
        assert failed.value.code == -32603 and failed.value.message == "broken"
        asking = (await client.request("tools/call", {"name": "asks", "arguments": {}, "task": {}}))["task"]
        waiting = await settled(client, asking["taskId"], "input_required")  # its questions wait for tasks/result
        assert waiting["taskId"] == asking["taskId"]
        said = await client.request("tasks/result", {"taskId": asking["taskId"]})  # which carries them, answered
        assert said["content"][0]["text"] == "x+x" and not said.get("isError")
        long = (await client.request("tools/call", {"name": "work", "arguments": {"seconds": 30}, "task": {}}))["task"]
        assert (await client.request("tasks/cancel", {"taskId": long["taskId"]}))["status"] == "cancelled"
        for params, code in (
            ({"name": "quick", "arguments": {}, "task": {}}, -32601),  # not a task-supporting tool
            ({"name": "must_be_a_task", "arguments": {}}, -32601),  # only as a task
        ):
            with pytest.raises(ClientError) as refused:
                await client.request("tools/call", params)
            assert refused.value.code == code
    assert ran == ["work"]
    async with TestClient(app) as modern:  # the 2025 methods are gone in 2026-07-28
        for method in ("tasks/result", "tasks/list"):
            with pytest.raises(ClientError) as gone:
                await modern.request(method, {"taskId": "x"})
            assert gone.value.code == -32601 and gone.value.status == 404


async def test_one_caller_cannot_fill_the_table(monkeypatch):
    from bastion.mcp import tasks as tasks_module

    monkeypatch.setattr(tasks_module, "MAX_RUNNING_PER_CALLER", 2)
    app = tasks_app([])
    async with TestClient(app, tasks=True, user="dev:greedy") as greedy:
        started = [await greedy.request("tools/call", {"name": "work", "arguments": {"seconds": 30}}) for _ in range(2)]
        assert [answer["resultType"] for answer in started] == ["task", "task"]
        # At the limit: the next call is an ordinary one, waited for, not a third task.
        waited = await greedy.request("tools/call", {"name": "work", "arguments": {"seconds": 0.2}})
        assert waited["resultType"] == "complete" and waited["content"][0]["text"] == "worked 0.2"
        for answer in started:  # the first two were not pushed out
            assert (await greedy.request("tasks/get", {"taskId": answer["taskId"]}))["status"] == "working"
        # Once one ends, a new task may start.
        await greedy.request("tasks/cancel", {"taskId": started[0]["taskId"]})
        again = await greedy.request("tools/call", {"name": "work", "arguments": {"seconds": 30}})
        assert again["resultType"] == "task"
    async with TestClient(app, protocol="2025-11-25", user="dev:greedy") as legacy:  # asked for a task: 429
        for _ in range(2):
            await legacy.request("tools/call", {"name": "work", "arguments": {"seconds": 30}, "task": {}})
        with pytest.raises(ClientError) as refused:
            await legacy.request("tools/call", {"name": "work", "arguments": {"seconds": 1}, "task": {}})
        assert refused.value.code == -32029 and refused.value.data == {"retryAfterSeconds": 5}
        assert refused.value.status == 429
