"""Tools served by someone else (a server Bastion fronts: gateway/remote.py), listed and called by the engine
beside its own, under the same per-tool scopes, [policy] and middleware."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .exchange import Exchange


class ToolSource(Protocol):
    name: str  # for logs and errors
    scopes: tuple[str, ...]  # needed to see and call any of its tools
    version: int  # changes whenever its tools do

    def tools(self) -> Sequence[dict[str, Any]]:
        """Its tools' definitions, under the names clients see."""
        ...

    async def call_tool(self, name: str, arguments: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        """A CallToolResult; McpError for the server's own errors, an isError result if it cannot be reached."""
        ...
