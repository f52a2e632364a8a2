"""In-process HTTP for the tests: one way to put an app behind an httpx client, the settings a test starts from,
and what the app's store holds (to prove that a refused request wrote nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bastion import App
from bastion.settings import Settings
from bastion.store import keys

BASE = "http://127.0.0.1:8000"


def local_settings(**sections: Any) -> Settings:
    """Settings from these sections alone: no environment variables, no settings file."""
    return Settings.load(env={}, **sections)


@asynccontextmanager
async def asgi_client(
    target: App | Any, settings: Settings | None = None, *, base: str = BASE
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to `target` in process: a Bastion App (served with `settings`, by default
    local_settings()) or any ASGI callable as it is."""
    if isinstance(target, App):
        target = target.asgi(settings if settings is not None else local_settings())
    elif settings is not None:
        raise TypeError("settings go with a Bastion App, not with an ASGI callable")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url=base) as client:
        yield client


def store_of(client: httpx.AsyncClient) -> Any:
    """The store behind a client made by asgi_client, through whatever middleware wraps the app."""
    app = client._transport.app  # type: ignore[attr-defined]
    while not hasattr(app, "store"):
        app = app.app
    return app.store


async def records(holder: httpx.AsyncClient | Any, prefix: str = "") -> dict[str, Any]:
    """Every live record (key and value) under `prefix`, in the store itself or the one behind a client:
    equal before and after a refused request when it wrote nothing. The registration limit's counters are left
    out unless asked for by prefix: every /register attempt counts, refused or not (tests/oauth/test_rate_limit.py);
    so is the audit trail, whose business is to record refusals too (tests/ops/test_audit.py)."""
    store = store_of(holder) if isinstance(holder, httpx.AsyncClient) else holder
    kept_apart = [keys.kind_prefix(kind) for kind in (keys.RATE_LIMIT, *keys.AUDIT_KINDS)]
    listed = [
        key
        for key in await store.keys(prefix)
        if not any(key.startswith(apart) and not prefix.startswith(apart) for apart in kept_apart)
    ]
    return {key: await store.get(key) for key in listed}
