"""[[gateway.servers]]: MCP servers Bastion fronts, whose tools it serves beside its own (docs/gateway.md)."""

from __future__ import annotations

import os
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class GatewayServer(BaseModel):
    """One MCP server behind Bastion: a Streamable HTTP endpoint (url), or a command it runs for each user
    (command and args, over stdio)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What logs, errors and metrics call it: lowercase letters, digits, - and _.")
    url: str | None = Field(None, description="Its Streamable HTTP endpoint, e.g. https://notes.internal/mcp.")
    command: str | None = Field(
        None, description='Or a command speaking MCP over stdio, e.g. "npx"; one process per signed-in user.'
    )
    args: list[str] = Field(default_factory=list, description='The command\'s arguments, e.g. ["-y", "@org/server"].')
    env: dict[str, str] = Field(default_factory=dict, description="stdio: variables the process gets as they are.")
    env_from: dict[str, str] = Field(
        default_factory=dict,
        description='stdio: variables the process gets from Bastion\'s environment, e.g. {API_KEY = "NOTES_KEY"}.',
    )
    upstream_env: dict[str, str] = Field(
        default_factory=dict,
        description='stdio: variables holding the user\'s upstream token, e.g. {GITHUB_TOKEN = "github"}.',
    )
    idle_seconds: float = Field(600, gt=0, description="stdio: a user's process idle this long is stopped.")
    max_processes: int = Field(
        50, ge=1, description="stdio: processes at most (one per user), the idlest stopped first."
    )
    prefix: str = Field("", description='Put before each of its tool names, e.g. "notes_" (none by default).')
    protocol_version: Literal["auto", "2026-07-28", "2025-11-25", "2025-06-18"] = Field(
        "auto", description="The revision to speak to it: auto tries 2026-07-28, then 2025-11-25 with a session."
    )
    token_env: str | None = Field(
        None,
        description="Environment variable holding the credential Bastion sends it (never the caller's token).",
    )
    upstream: str | None = Field(
        None,
        description="HTTP: send each caller's own token at this upstream provider (Authorization: Bearer), never "
        "Bastion's token; its tools are then listed with a caller's token.",
    )
    token_header: str = Field(
        "Authorization", description='Header that carries it: Authorization (as "Bearer <token>") or e.g. X-Api-Key.'
    )
    tools: list[str] = Field(default_factory=lambda: ["*"], description="Globs of its tool names to serve.")
    exclude: list[str] = Field(default_factory=list, description="Globs of its tool names never to serve.")
    rename: dict[str, str] = Field(
        default_factory=dict, description="Its tool name -> the name Bastion serves it under (no prefix added)."
    )
    scopes: list[str] = Field(default_factory=list, description="Scopes needed to see and call any of its tools.")
    timeout_seconds: float = Field(60, gt=0, le=3600, description="How long a call to it may take.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"{value!r}: use lowercase letters, digits, - and _ (at most 64)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise ValueError(f"{value!r} carries credentials: put them in the variable named by token_env")
        return value

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None

    def problems(self) -> list[str]:
        where = f"gateway.servers {self.name!r}"
        if (self.url is None) == (self.command is None):
            return [f"{where}: give url (a server over HTTP) or command (a program run over stdio), not both"]
        problems = []
        if self.token_env and not self.token():
            problems.append(f"{where}: token_env names {self.token_env}, which is not set; set it or remove token_env")
        problems += [
            f"{where}: env_from {name} = {source!r}: {source} is not set; set it or remove the entry"
            for name, source in self.env_from.items()
            if source not in os.environ
        ]
        if self.command is None and (self.env or self.env_from or self.upstream_env):
            problems.append(f"{where}: env, env_from and upstream_env are for servers run as a command")
        if self.command is not None and self.upstream:
            problems.append(f"{where}: a command gets users' tokens through upstream_env, not upstream")
        if self.upstream and self.token_env and self.token_header.lower() == "authorization":
            problems.append(f"{where}: upstream and token_env both fill Authorization; give token_header another name")
        return problems


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    servers: list[GatewayServer] = Field(
        default_factory=list, description="MCP servers whose tools Bastion serves beside its own ([[gateway.servers]])."
    )

    def problems(self) -> list[str]:
        problems = [problem for server in self.servers for problem in server.problems()]
        names = [server.name for server in self.servers]
        problems += [
            f"gateway.servers: {name!r} is named twice; names must differ"
            for name in sorted({n for n in names if names.count(n) > 1})
        ]
        return problems
