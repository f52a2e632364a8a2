"""The composition root: what it builds, what the lifespan starts and closes, and how a start-up failure is told."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from bastion import App
from bastion.compose import build
from bastion.settings import Settings, SettingsError
from bastion.store import SQLiteStore, StoreUnavailable
from tests.mcp.conftest import build_app


def authenticated(tmp_path: Any, **auth: Any) -> Settings:
    return Settings.load(
        env={},
        store={"backend": "sqlite", "path": str(tmp_path / "bastion.db")},
        authorization_server={"enabled": True, "dev_login": True, **auth},
    )


async def lifespan(asgi: Any, *events: str) -> list[dict[str, Any]]:
    """Drive the ASGI lifespan protocol through the given events; the messages the app sent back."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for event in events:
        inbox.put_nowait({"type": f"lifespan.{event}"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(asgi({"type": "lifespan"}, inbox.get, send), 60)  # a hang is a failure, not a bound
    return sent


def opened_names(asgi: Any) -> list[str]:
    return [name for name, _ in asgi.lifecycle.shutdown]


async def test_shutdown_closes_everything_that_was_opened_newest_first(tmp_path):
    issuer = {"name": "corp", "issuer": "https://corp.example"}
    settings = authenticated(tmp_path).model_copy(
        update={"resource": Settings.load(env={}, resource={"issuers": [issuer]}).resource}
    )
    asgi = build(build_app(), settings)
    assert opened_names(asgi) == ["MCP sessions", "issuer client", "store", "bus", "tool threads"]
    store, server = asgi.store, asgi.mcp.app.server
    assert await lifespan(asgi, "startup", "shutdown") == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    with pytest.raises(StoreUnavailable):  # the store's connections and threads are gone
        await store.get("client:x")
    assert server.executor._shutdown
    issuers = asgi.mcp.verify.issuers
    assert issuers and all(issuer.http.is_closed for issuer in issuers)


async def test_an_unauthenticated_server_opens_no_store_and_no_oauth_routes():
    asgi = build(build_app(), Settings.load(env={}))
    assert asgi.store is None and opened_names(asgi) == ["MCP sessions", "tool threads"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1:8000") as http:
        assert (await http.get("/.well-known/oauth-authorization-server")).status_code == 404
        assert (await http.get("/healthz")).json() == {"status": "ok"}


async def test_a_store_that_cannot_answer_at_start_up_stops_the_server_with_one_line(tmp_path):
    store = SQLiteStore(tmp_path / "given.db")
    asgi = build(build_app(), authenticated(tmp_path), store=store)
    await store.close()  # as if the database went away between building and serving
    sent = await lifespan(asgi, "startup")
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    message = sent[0]["message"]
    assert message.startswith("store: ") and "\n" not in message and "Traceback" not in message


async def test_an_unusable_store_path_is_a_settings_error_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = Settings.load(
        env={},
        store={"backend": "sqlite", "path": str(blocker / "bastion.db")},
        authorization_server={"enabled": True, "dev_login": True},
    )
    with pytest.raises(SettingsError, match=r"store: sqlite at .*a-file/bastion\.db.*\[store\] path"):
        build(build_app(), settings)


def test_settings_that_serve_refuses_are_refused_here_too():
    with pytest.raises(SettingsError, match="would serve MCP without authentication"):
        App("x").asgi(Settings.load(env={}, host="0.0.0.0"))


async def test_a_revocation_reaches_the_gate_s_cache_through_the_bus(tmp_path):
    from tests.oauth.conftest import BASE, register, tokens_for

    asgi = build(build_app(), authenticated(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as http:
        client = await register(http)
        tokens = await tokens_for(http, client)
        bearer = {"authorization": f"Bearer {tokens['access_token']}", "accept": "application/json"}
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {**bearer, "mcp-protocol-version": "2025-06-18"}
        assert (await http.post("/mcp", headers=headers, json=ping)).status_code != 401  # verified and remembered
        assert asgi.mcp._cache
        revoked = await http.post("/revoke", data={"client_id": client["client_id"], "token": tokens["refresh_token"]})
        assert revoked.status_code == 200
        assert not asgi.mcp._cache  # forgotten at once, not after the cache's 10 s
        refused = await http.post("/mcp", headers=headers, json=ping)
        assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
