"""The `bastion` command and `python server.py`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import mcp.types as types
import pytest
from mcp.client.stdio import StdioServerParameters

from mcp import Client
from tests.messages import initialize
from tests.processes import stop
from tests.waiting import DEADLINE_SECONDS, healthy, wait_until

from .conftest import EXAMPLES, ROOT, bastion_server, free_port

pytestmark = pytest.mark.e2e
FEATURES = ROOT / "tests" / "e2e" / "servers" / "features.py"


def bastion(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli", *args],
        cwd=ROOT,
        capture_output=True,
        input=stdin,
        timeout=timeout,
        env=env,
    )


def test_refuses_to_expose_unauthenticated_tools():
    result = bastion("serve", str(EXAMPLES / "notes.py"), "--host", "0.0.0.0")
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "--insecure-no-auth" in message and "Traceback" not in message


def test_bad_configuration_says_what_to_change(tmp_path):
    config = tmp_path / "bastion.toml"
    config.write_text("port = 'eighty'\ntimeout = 3\n")
    result = bastion("serve", str(EXAMPLES / "notes.py"), "--config", str(config))
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "port" in message and "timeout: not a setting" in message and "Traceback" not in message


def test_missing_server_file_is_a_clear_error(tmp_path):
    result = bastion("serve", str(tmp_path / "nope.py"))
    assert result.returncode != 0
    assert "no such file" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


async def test_python_server_py_serves_stdio_to_the_sdk_client():
    params = StdioServerParameters(command=sys.executable, args=[str(EXAMPLES / "notes.py")], cwd=str(ROOT))

    async def confirm(ctx, request):
        return types.ElicitResult(action="accept", content={"confirm": True})

    async with Client(params, mode="legacy", elicitation_callback=confirm) as client:
        note = await client.call_tool("add_note", {"text": "buy milk", "tags": ["home"]})
        assert note.structured_content["text"] == "buy milk" and note.structured_content["tags"] == ["home"]
        found = await client.call_tool("search_notes", {"query": "MILK"})
        assert [n["id"] for n in found.structured_content["result"]] == [note.structured_content["id"]]
        read = await client.read_resource(f"notes://{note.structured_content['id']}")
        assert json.loads(read.contents[0].text)["text"] == "buy milk"
        prompt = await client.get_prompt("summarize_notes", {})
        assert "buy milk" in prompt.messages[0].content.text
        cleared = await client.call_tool("clear_notes", {})
        assert cleared.content[0].text == "Deleted 1 notes."


async def test_demo_server_over_http():
    with bastion_server(EXAMPLES / "notes.py") as url:
        async with Client(url) as client:
            assert client.protocol_version == "2026-07-28"
            empty = await client.call_tool("add_note", {"text": "   "})
            assert empty.is_error and empty.content[0].text == "a note needs some text"
            listed = await client.list_tools()
            assert {t.name for t in listed.tools} == {"add_note", "search_notes", "clear_notes"}


def stdio_exchange(lines: list[bytes], env: dict[str, str] | None = None) -> list[dict]:
    result = bastion("serve", str(FEATURES), "--stdio", stdin=b"".join(lines), env=env)
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_stdio_survives_hostile_input():
    init = initialize("2025-06-18", msg_id=1)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 2}}}
    answers = stdio_exchange(
        [
            b"this is not json\n",
            b'{"jsonrpc":"2.0","id":9,"method":"tools/list"}\n',  # before initialize
            b'{"jsonrpc":"2.0","id":"x" ' + b"a" * 2_000_000 + b"}\n",  # longer than max_body_bytes
            b"[1,2,3]\n",
            json.dumps(init).encode() + b"\n",
            b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n',
            json.dumps(call).encode() + b"\n",
        ]
    )
    errors = [a["error"]["code"] for a in answers if "error" in a]
    assert errors == [-32700, -32600, -32600, -32600]
    results = {a["id"]: a["result"] for a in answers if "result" in a}
    assert results[1]["protocolVersion"] == "2025-06-18"
    assert results[2]["structuredContent"] == {"result": 3}


def test_a_hanging_tool_is_cancelled_by_the_timeout():
    import os

    init = initialize("2025-11-25", msg_id=1)
    hang = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 60}}}
    answers = stdio_exchange(
        [json.dumps(init).encode() + b"\n", json.dumps(hang).encode() + b"\n"],
        env={**os.environ, "BASTION_TOOL_TIMEOUT_SECONDS": "1"},
    )
    [result] = [a["result"] for a in answers if a.get("id") == 2]
    assert result["isError"] is True and "did not finish within 1 seconds" in result["content"][0]["text"]


async def test_a_failing_tool_does_not_take_the_server_down():
    with bastion_server(FEATURES) as url:
        async with Client(url) as client:
            for _ in range(3):
                assert (await client.call_tool("refuse", {})).is_error
            with anyio.fail_after(DEADLINE_SECONDS):  # a guard against a hang, not a measure of speed
                assert (await client.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}


def test_worker_token_command(tmp_path):
    import os

    from bastion.worker.auth import verify

    config = tmp_path / "bastion.toml"
    config.write_text('[worker]\nsecret_env = "WORKER_SECRET"\n')
    secret = "cSKSjPxq_vq5lKOvYS6ZpxN1VH2EzTOf7Mb01iSRBZw"  # secrets.token_urlsafe(32), for this test only
    env = {**os.environ, "WORKER_SECRET": secret}
    minted = bastion("worker-token", "--config", str(config), "--seconds", "60", env=env)
    assert minted.returncode == 0, minted.stderr.decode()
    claims = verify(minted.stdout.decode().strip(), secret, 300)
    assert claims["aud"] == "worker" and claims["exp"] - claims["iat"] == 60
    too_long = bastion("worker-token", "--config", str(config), "--seconds", "100000", env=env)
    assert too_long.returncode == 2 and b"max_token_seconds" in too_long.stderr
    missing = bastion(
        "worker-token", "--config", str(config), env={k: v for k, v in env.items() if k != "WORKER_SECRET"}
    )
    assert missing.returncode == 2 and secret.encode() not in missing.stderr


def test_worker_token_refuses_exactly_what_serve_refuses(tmp_path):
    config = tmp_path / "bastion.toml"
    config.write_text('[worker]\nsecret_env = "WORKER_SECRET"\n')
    for weak, reason in [
        ("worker-secret-" + "w" * 32, "uses only 9 different characters"),
        ("Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3", "repeats earlier characters"),
        ("my-super-secret-worker-key-for-prod", "contains common words"),
        ("Xq7-dev-key", "too short (11 characters"),
    ]:
        env = {**os.environ, "WORKER_SECRET": weak}
        minted = bastion("worker-token", "--config", str(config), env=env)
        assert minted.returncode == 2 and minted.stdout == b""  # no token signed with it
        [line] = minted.stderr.decode().splitlines()
        assert line.startswith("bastion: the worker secret in WORKER_SECRET (named by worker.secret_env) ")
        assert reason in line and "secrets.token_urlsafe(32)" in line and weak not in line
        served = bastion("serve", str(EXAMPLES / "notes.py"), "--config", str(config), env=env)
        assert served.returncode == 2 and "Traceback" not in served.stderr.decode()
        assert line.removeprefix("bastion: ") in served.stderr.decode().splitlines()


ASGI_MODULE = """
from bastion import App
from bastion.settings import Settings

app = App("mine")

@app.tool
def ping() -> str:
    return "pong"

asgi = app.asgi(Settings(host={host!r}))
"""


def uvicorn(module: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module.stem}:asgi",
        "--app-dir",
        str(module.parent),
        "--port",
        str(port),
    ]


def test_the_asgi_app_under_your_own_uvicorn_refuses_what_serve_refuses(tmp_path):
    module = tmp_path / "exposed.py"
    module.write_text(ASGI_MODULE.format(host="0.0.0.0"))
    port = free_port()
    result = subprocess.run(uvicorn(module, port), cwd=tmp_path, capture_output=True, timeout=30)
    output = result.stderr.decode()
    assert result.returncode != 0 and "SettingsError" in output
    assert "host = '0.0.0.0' would serve MCP without authentication beyond this machine" in output
    assert "Uvicorn running" not in output
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_the_asgi_app_on_loopback_runs_under_your_own_uvicorn(tmp_path):
    module = tmp_path / "local.py"
    module.write_text(ASGI_MODULE.format(host="127.0.0.1"))
    port = free_port()
    process = subprocess.Popen(uvicorn(module, port), cwd=tmp_path, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}") or process.poll() is not None, "uvicorn starting")
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
    finally:
        stop(process)
        if process.stderr:
            process.stderr.close()


@pytest.mark.parametrize("protocol", ["2026-07-28", "2025-11-25"])
def test_inspect_and_call_a_server_at_a_url(protocol):
    with bastion_server(EXAMPLES / "notes.py") as url:
        shown = bastion("inspect", url, "--json", "--protocol", protocol)
        assert shown.returncode == 0, shown.stderr
        found = json.loads(shown.stdout)
        assert found["server"] == "notes" and found["protocol"] == protocol
        assert [tool["name"] for tool in found["tools"]] == ["add_note", "search_notes", "clear_notes"]
        added = bastion("call", url, "add_note", "text=from the command line", "--protocol", protocol)
        assert added.returncode == 0 and json.loads(added.stdout)["text"] == "from the command line"
        searched = bastion("call", url, "search_notes", "query=command")
        assert searched.returncode == 0 and "from the command line" in searched.stdout.decode()
        asks = bastion("call", url, "clear_notes", "--protocol", protocol)
        # The tool asks the user; nobody at a command line can answer: said, and the status is not 0.
        assert asks.returncode != 0 and b"cannot answer elicitation/create" in asks.stdout + asks.stderr
    gone = bastion("inspect", url)
    assert gone.returncode == 2 and b"could not connect" in gone.stderr and gone.stderr.count(b"\n") == 1


SERVER_V1 = "from bastion import App\napp = App('live')\n\n@app.tool\ndef hi() -> str:\n    return 'hi'\n"
MODERN_LIST = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/list",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}


def tool_names(url: str) -> list[str] | None:
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
    try:
        answer = httpx.post(url, json=MODERN_LIST, headers={**headers, "mcp-method": "tools/list"}, timeout=5)
    except httpx.HTTPError:
        return None
    return [tool["name"] for tool in answer.json()["result"]["tools"]] if answer.status_code == 200 else None


def in_background(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """`bastion <args>` running in its own process group (so that stop() ends its children too), its output in
    `log`, working in the log's folder."""
    with open(log, "wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "bastion.cli", *args],
            cwd=log.parent,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_serve_reload_serves_each_change_and_survives_a_broken_one(tmp_path):
    server = tmp_path / "live.py"
    server.write_text(SERVER_V1)
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log = tmp_path / "serve.log"
    process = in_background(log, "serve", str(server), "--reload", "--port", str(port))
    try:
        wait_until(lambda: tool_names(url) == ["hi"], "the first version serving")
        server.write_text(SERVER_V1 + "\n@app.tool\ndef bye() -> str:\n    return 'bye'\n")
        wait_until(lambda: tool_names(url) == ["hi", "bye"], "the changed file served")
        server.write_text(SERVER_V1 + "\ndef broken(:\n")
        wait_until(lambda: b"invalid syntax" in log.read_bytes(), "the broken file refused in one line")
        assert tool_names(url) is None and b"Traceback" not in log.read_bytes()
        server.write_text(SERVER_V1)
        wait_until(lambda: tool_names(url) == ["hi"], "the mended file served again")
    finally:
        stop(process)
    assert tool_names(url) is None  # the child went with its parent


def test_dev_serves_with_dev_login_and_says_how_to_connect(tmp_path):
    server = tmp_path / "work.py"
    server.write_text(SERVER_V1)
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    log = tmp_path / "dev.log"
    process = in_background(log, "dev", str(server), "--port", str(port))
    try:
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}"), "bastion dev serving")
        refused = httpx.post(url, json=MODERN_LIST, timeout=5)
        assert refused.status_code == 401 and "resource_metadata=" in refused.headers["www-authenticate"]
        metadata = httpx.get(f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server", timeout=5).json()
        assert metadata["issuer"] == f"http://127.0.0.1:{port}"
        guide = log.read_text()
        for line in (f"claude mcp add --transport http work {url}", f"bastion install cursor {url} --name work"):
            assert line in guide
        assert "dev login" in guide
    finally:
        stop(process)
    assert not list(tmp_path.glob("*.db"))  # its records were in a throwaway folder, now gone
