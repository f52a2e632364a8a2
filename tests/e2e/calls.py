"""A raw 2026-07-28 tools/call of tests/e2e/servers/processes.py's `pid` tool: which process served a request."""

from __future__ import annotations

from typing import Any

import httpx


def pid_call(token: str, client: str) -> dict[str, Any]:
    """The headers and body of the call (keyword arguments for an httpx request), as client `client`."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": client, "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {
        "headers": {
            "authorization": f"Bearer {token}",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28",
            "mcp-method": "tools/call",
            "mcp-name": "pid",
        },
        "json": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "pid", "_meta": meta}},
    }


def served_by(answer: httpx.Response) -> int:
    """The pid in a successful answer to `pid_call`."""
    assert answer.status_code == 200, answer.text
    return int(answer.json()["result"]["content"][0]["text"])
