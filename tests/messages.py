"""JSON-RPC messages the tests send often."""

from typing import Any


def initialize(version: str = "2025-11-25", msg_id: int = 0) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": msg_id,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
