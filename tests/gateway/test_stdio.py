"""[[gateway.servers]] with a command: a stdio MCP server (written with the official Python SDK) run once per user,
never shared: two users get two processes (by the ids the processes report), each with only the environment
configured for it; a crash is a clear error and the next call starts a new process; idle processes are stopped,
the idlest first when the cap is reached, and every one at shutdown."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bastion import App
from bastion.compose import build
from bastion.store import MemoryStore
from tests.clients import asgi_client
from tests.gateway.test_upstream import signed_in_with_fake
from tests.mcp.conftest import modern_body, modern_headers
from tests.oauth.conftest import UPSTREAM_SECRET_ENV, register, settings, tokens_for, upstream_entry
from tests.oauth.test_upstream_login import FakeProvider
from tests.waiting import eventually

SERVER = Path(__file__).parent / "servers" / "stdio_notes.py"


def stdio_settings(**server: Any):
    base = settings()
    entry = {
        "name": "local",
        "command": sys.executable,
        "args": [str(SERVER)],
        "prefix": "local_",
        "env": {"GREETING": "hi"},
        "env_from": {"FROM_BASTION": "TEST_STDIO_SECRET"},
        **server,
    }
    return base.model_copy(update={"gateway": base.gateway.model_validate({"servers": [entry]})})


async def call(http: httpx.AsyncClient, token: str, tool: str, arguments: dict | None = None) -> dict:
    answer = await http.post(
        "/mcp",
        headers={**modern_headers("tools/call", tool), "authorization": f"Bearer {token}"},
        json=modern_body("tools/call", {"name": tool, "arguments": arguments or {}}),
    )
    return answer.json()["result"]


async def caller(http: httpx.AsyncClient, username: str) -> str:
    """An access token of `username`'s (signed in through the dev login)."""
    return str((await tokens_for(http, await register(http), username=username))["access_token"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def started(surface: Any) -> tuple[Any, Any]:
    await surface.lifecycle.start()
    remote = surface.mcp.app.server.sources[0]

    async def listed() -> bool:
        return bool(remote.tools())

    await eventually(listed, "the stdio server's tools listed (by a process of Bastion's own)")
    return remote, remote.connections.pool


async def test_each_user_has_a_process_of_their_own_with_only_the_configured_environment(monkeypatch):
    monkeypatch.setenv("TEST_STDIO_SECRET", "from-bastion")
    monkeypatch.setenv("TEST_STDIO_NOT_PASSED", "kept-back")
    surface = App("front").asgi(stdio_settings())
    _, pool = await started(surface)
    try:
        async with asgi_client(surface) as http:
            alice, bob = await caller(http, "alice"), await caller(http, "bob")
            alice_pid = int((await call(http, alice, "local_pid"))["content"][0]["text"])
            bob_pid = int((await call(http, bob, "local_pid"))["content"][0]["text"])
            again = int((await call(http, alice, "local_pid"))["content"][0]["text"])
            assert alice_pid != bob_pid and again == alice_pid and alive(alice_pid) and alive(bob_pid)
            assert alice_pid != os.getpid()

            async def env(name: str) -> str:
                return (await call(http, alice, "local_env", {"name": name}))["content"][0]["text"]

            assert await env("GREETING") == "hi"
            assert await env("FROM_BASTION") == "from-bastion"
            assert await env("TEST_STDIO_NOT_PASSED") == ""  # Bastion's own environment stays Bastion's
            assert await env("TEST_STDIO_SECRET") == ""
    finally:
        await surface.lifecycle.stop()
    # Shutdown stopped every process.
    assert not alive(alice_pid) and not alive(bob_pid) and pool.clients == {}


async def test_a_crash_is_a_clear_error_and_the_next_call_starts_a_new_process(monkeypatch):
    monkeypatch.setenv("TEST_STDIO_SECRET", "x")
    surface = App("front").asgi(stdio_settings())
    await started(surface)
    try:
        async with asgi_client(surface) as http:
            token = (await tokens_for(http, await register(http)))["access_token"]
            first = int((await call(http, token, "local_pid"))["content"][0]["text"])
            crashed = await call(http, token, "local_crash")
            assert crashed["isError"] is True
            text = crashed["content"][0]["text"]
            assert "The server 'local' behind this gateway is unavailable" in text and "exit status 3" in text
            second = int((await call(http, token, "local_pid"))["content"][0]["text"])
            assert second != first and alive(second) and not alive(first)
    finally:
        await surface.lifecycle.stop()


async def test_at_the_cap_the_idlest_process_is_stopped_to_make_room(monkeypatch):
    monkeypatch.setenv("TEST_STDIO_SECRET", "x")
    surface = App("front").asgi(stdio_settings(max_processes=1))
    _, pool = await started(surface)
    try:
        async with asgi_client(surface) as http:
            alice, bob = await caller(http, "alice"), await caller(http, "bob")
            alice_pid = int((await call(http, alice, "local_pid"))["content"][0]["text"])
            bob_pid = int((await call(http, bob, "local_pid"))["content"][0]["text"])  # the cap: alice's goes
            assert not alive(alice_pid) and alive(bob_pid) and list(pool.clients) == ["dev:bob"]
    finally:
        await surface.lifecycle.stop()


async def test_an_idle_process_is_stopped(monkeypatch):
    monkeypatch.setenv("TEST_STDIO_SECRET", "x")
    surface = App("front").asgi(stdio_settings(idle_seconds=0.5))
    _, pool = await started(surface)
    try:
        async with asgi_client(surface) as http:
            pid = int((await call(http, await caller(http, "alice"), "local_pid"))["content"][0]["text"])

            async def reaped() -> bool:  # out of the pool, then its process ended (the stop takes a moment)
                return not pool.clients and not alive(pid)

            await eventually(reaped, "the idle process stopped")
    finally:
        await surface.lifecycle.stop()


class RenewingProvider(FakeProvider):
    """The fake provider, its token about to expire (renewed once 3 seconds have passed), renewed as fake-at-2."""

    async def exchange(self, code, redirect_uri, code_verifier, nonce):
        identity = await super().exchange(code, redirect_uri, code_verifier, nonce)
        identity.token.update(expires_at=time.time() + 63, refresh_token="fake-rt")
        return identity

    async def refresh(self, token):
        return {"access_token": "fake-at-2", "refresh_token": "fake-rt-2", "expires_at": time.time() + 3600}


async def test_the_users_upstream_token_is_in_their_process_and_a_renewed_one_starts_a_new_process(monkeypatch):
    monkeypatch.setenv(UPSTREAM_SECRET_ENV, "not-used-by-the-fake")
    monkeypatch.setenv("TEST_STDIO_SECRET", "x")
    base = stdio_settings(upstream_env={"NOTES_TOKEN": "fake"})
    configured = base.model_copy(
        update={
            "authorization_server": settings(dev_login=False, upstream=[upstream_entry("fake")]).authorization_server
        }
    )
    surface = build(App("front"), configured, store=MemoryStore(), upstream={"fake": RenewingProvider()})
    _, pool = await started(surface)
    try:
        async with asgi_client(surface) as http:
            fay = await signed_in_with_fake(http)
            first = await call(http, fay, "local_env", {"name": "NOTES_TOKEN"})
            assert first["content"][0]["text"] == "fake-at"
            first_pid = int((await call(http, fay, "local_pid"))["content"][0]["text"])

            async def renewed() -> bool:  # once the token is due, the next call renews it, in a new process
                answer = await call(http, fay, "local_env", {"name": "NOTES_TOKEN"})
                return bool(answer["content"][0]["text"] == "fake-at-2")

            await eventually(renewed, "the renewed token in the user's process")
            second_pid = int((await call(http, fay, "local_pid"))["content"][0]["text"])
            assert second_pid != first_pid and not alive(first_pid) and len(pool.clients) == 1
            # Tokens are compared by digest: the process record never keeps them.
            assert "fake-at" not in pool.clients["fake:u-42"].credentials
    finally:
        await surface.lifecycle.stop()
