"""The composition root: what it builds, what the lifespan starts and closes, and how a start-up failure is told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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


@contextlib.asynccontextmanager
async def running(asgi: Any) -> AsyncIterator[None]:
    """`asgi` started through its lifespan (its bus listening) for the block, shut down after it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    task = asyncio.create_task(asgi({"type": "lifespan"}, inbox.get, started.put))
    assert (await asyncio.wait_for(started.get(), 60))["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait_for(task, 60)


def opened_names(asgi: Any) -> list[str]:
    return [name for name, _ in asgi.lifecycle.shutdown]


async def test_shutdown_closes_everything_that_was_opened_newest_first(tmp_path):
    issuer = {"name": "corp", "issuer": "https://corp.example"}
    settings = authenticated(tmp_path).model_copy(
        update={"resource": Settings.load(env={}, resource={"issuers": [issuer]}).resource}
    )
    asgi = build(build_app(), settings)
    assert opened_names(asgi) == [
        "MCP sessions",
        "tool threads",  # made once the audit trail is known (refusals are recorded), closed before it
        "issuer client",
        "client expiry sweep",
        "audit trail",
        "store",
        "bus",
    ]
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
    transport = httpx.ASGITransport(app=asgi)
    async with running(asgi), httpx.AsyncClient(transport=transport, base_url=BASE) as http:
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


def the_bus(asgi: Any) -> Any:
    """The bus the lifespan starts (its start step is the bus's own bound method)."""
    [start] = [step for name, step in asgi.lifecycle.startup if name == "bus"]
    return start.__self__


def with_store(tmp_path: Any, backend: str, **store: Any) -> Settings:
    import secrets

    return Settings.load(
        env={},
        state_secret=secrets.token_urlsafe(32),
        store={"backend": backend, "path": str(tmp_path / "bastion.db"), **store},
        authorization_server={"enabled": True, "dev_login": True, "cookie_secret": secrets.token_urlsafe(32)},
    )


@pytest.mark.parametrize(
    "backend, kind, bus", [("sqlite", "SQLiteStore", "SQLiteBus"), ("memory", "MemoryStore", "LocalBus")]
)
async def test_embedded_backends_get_their_store_and_a_bus_reaching_every_process_on_it(tmp_path, backend, kind, bus):
    asgi = build(build_app(), with_store(tmp_path, backend))
    assert type(asgi.store).__name__ == kind and type(the_bus(asgi)).__name__ == bus
    assert (tmp_path / "bastion.db").exists() == (backend == "sqlite")
    await lifespan(asgi, "startup", "shutdown")


@pytest.mark.parametrize(
    "backend, url, cluster",
    [
        ("postgres", "postgresql://127.0.0.1:1/bastion", None),
        ("redis", "redis://127.0.0.1:1/0", None),
        ("redis", "redis://127.0.0.1:1/0", True),
        ("redis", "redis://127.0.0.1:1/0", False),
    ],
)
def test_network_backends_get_their_store_and_a_bus_that_reaches_every_instance(
    tmp_path, monkeypatch, backend, url, cluster
):
    from bastion.store.bus.postgres import PostgresBus
    from bastion.store.bus.redis import RedisBus
    from bastion.store.postgres import PostgresStore
    from bastion.store.redis import RedisStore

    monkeypatch.setenv("STORE_URL", url)
    settings = with_store(tmp_path, backend, url_env="STORE_URL", **({} if cluster is None else {"cluster": cluster}))
    # Building connects to nothing (port 1 answers no one): the lifespan's start() does, on the serving loop.
    asgi = build(build_app(), settings)
    store, bus = asgi.store, the_bus(asgi)
    if backend == "postgres":
        assert type(store) is PostgresStore and type(bus) is PostgresBus
    else:
        assert type(store) is RedisStore and type(bus) is RedisBus
        assert store.cluster is cluster and bus.cluster is cluster  # unset: each asks the server
    assert store.url == url and bus.url == url  # the URL from the variable url_env names
    assert not (tmp_path / "bastion.db").exists()


def test_an_external_issuer_alone_keeps_no_grants_and_its_gate_hears_no_shared_bus(tmp_path):
    from bastion.store.bus import LocalBus
    from bastion.store.bus.redis import RedisBus

    issuer = {"name": "corp", "issuer": "https://corp.example"}
    # The store section names a network backend: nothing here revokes grants, so the gate's cache does not depend
    # on the shared bus and no authorization server uses the store; the store holds the shared sessions, and the
    # bus carries their events and the relay of list changes.
    settings = with_store(tmp_path, "redis", url="redis://127.0.0.1:1/0")
    settings = settings.model_copy(
        update={
            "authorization_server": settings.authorization_server.model_copy(update={"enabled": False}),
            "resource": Settings.load(env={}, resource={"issuers": [issuer]}).resource,
        }
    )
    asgi = build(build_app(), settings)
    assert asgi.store is None and type(asgi.mcp.bus) is LocalBus
    assert type(the_bus(asgi)) is RedisBus
    assert [name for name, _ in asgi.lifecycle.startup] == ["bus", "store", "store", "notification relay"]
    assert asgi.mcp.app.sessions.shared is not None


def test_servers_that_do_not_use_a_network_store_never_import_a_driver(tmp_path):
    """Neither an unauthenticated server nor one on SQLite loads the network backends or their drivers."""
    import subprocess
    import sys

    program = f"""
import sys
from bastion import App
from bastion.settings import Settings

App("plain").asgi(Settings.load(env={{}}))
App("sqlite").asgi(Settings.load(env={{}}, store={{"path": {str(tmp_path / "b.db")!r}}},
                   authorization_server={{"enabled": True, "dev_login": True}}))
loaded = [name for name in sys.modules
          if name.split(".")[0] in ("psycopg", "psycopg_pool", "asyncpg", "redis")
          or name.startswith(("bastion.store.postgres", "bastion.store.redis",
                              "bastion.store.bus.postgres", "bastion.store.bus.redis"))]
print(",".join(loaded) or "none")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"
