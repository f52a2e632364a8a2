"""What servers Bastion fronts offer (gateway/remote.py): tools, prompts, resources and resource templates, listed
and used by the engine beside its own, under the same per-tool scopes, [policy] and middleware."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .exchange import Exchange


class Source(Protocol):
    name: str  # for logs and errors
    scopes: tuple[str, ...]  # needed to see and use anything it offers
    version: int  # changes whenever its tools do

    def tools(self) -> Sequence[dict[str, Any]]:
        """Its tools' definitions, under the names clients see."""
        ...

    def prompts(self) -> Sequence[dict[str, Any]]: ...

    def resources(self) -> Sequence[dict[str, Any]]: ...

    def templates(self) -> Sequence[dict[str, Any]]: ...

    async def ensure_listed(self, ex: Exchange) -> None:
        """Called before a caller's listing: a chance to list what it offers through the caller's connection."""
        ...

    def serves_resource(self, uri: str) -> bool:
        """Whether `uri` is one of its resources, or matches one of its templates."""
        ...

    async def call_tool(
        self, name: str, arguments: dict[str, Any], ex: Exchange, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A CallToolResult (or, for a 2026-07-28 caller, an input_required result with its questions: `params`
        then carries the answers and the state back); McpError for the server's own errors, an isError result
        if it cannot be reached."""
        ...

    async def get_prompt(self, name: str, arguments: dict[str, Any], ex: Exchange) -> dict[str, Any]: ...

    async def read_resource(self, uri: str, ex: Exchange) -> dict[str, Any]: ...

    async def complete(self, params: dict[str, Any], ex: Exchange) -> dict[str, Any]:
        """completion/complete for one of its prompts or resource templates (named as clients see them)."""
        ...
