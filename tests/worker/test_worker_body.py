"""/worker/tools/invoke bounds its body while streaming: 413, the rest never pulled, and the tool never run."""

from __future__ import annotations

import json

import pytest

from bastion import App
from bastion.worker.api import MAX_BODY
from tests.bodies import CountingBody
from tests.clients import asgi_client

from .test_worker import SECRET, bearer, worker_settings

CHUNK = 16 * 1024


@pytest.fixture
def ran():
    return []


@pytest.fixture
async def worker(monkeypatch, ran):
    monkeypatch.setenv("WORKER_SECRET", SECRET)
    app = App("Notes", "1.4.0")

    @app.tool
    def note(text: str) -> str:
        """Records that it ran."""
        ran.append(text)
        return "noted"

    async with asgi_client(app, worker_settings()) as client:
        yield client


def call() -> bytes:
    # Valid JSON whatever whitespace follows it, so only the size can refuse it.
    body = {"execution_id": "e", "tool": {"name": "note", "toolkit": "Notes"}, "inputs": {"text": "hi"}}
    return json.dumps(body).encode()


async def test_an_ordinary_call_runs(worker, ran):
    padded = call() + b" " * (MAX_BODY - len(call()))  # exactly the limit
    answered = await worker.post("/worker/tools/invoke", content=padded, headers=bearer())
    assert answered.status_code == 200 and answered.json()["output"] == {"value": "noted"}
    assert ran == ["hi"]


@pytest.mark.parametrize("way", ["declared", "chunked", "lying"])
async def test_an_oversize_call_is_413_and_the_tool_does_not_run(worker, ran, way):
    stream = None
    headers = bearer()
    if way == "declared":
        content: object = call() + b" " * MAX_BODY
    elif way == "lying":
        content = call() + b" " * MAX_BODY
        headers["content-length"] = str(len(call()))
    else:
        content = stream = CountingBody(call(), 4 * MAX_BODY, CHUNK)
    refused = await worker.post("/worker/tools/invoke", content=content, headers=headers)
    assert refused.status_code == 413
    assert refused.json() == {"error": f"invalid tool call request: the request body is larger than {MAX_BODY} bytes"}
    if stream is not None:
        assert stream.pulled <= MAX_BODY // CHUNK + 2
    assert ran == []


async def test_the_token_is_checked_before_any_body_is_read(worker, ran):
    stream = CountingBody(call(), 4 * MAX_BODY, CHUNK)
    refused = await worker.post("/worker/tools/invoke", content=stream, headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["error"].startswith("invalid worker token: ")
    assert stream.pulled == 0 and ran == []
