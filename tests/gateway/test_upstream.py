"""[[gateway.servers]] with `upstream`: an HTTP server reached with each caller's own token at an upstream provider
(a fake provider here, signed in through Bastion's real flow): the server sees that token on the caller's requests,
never Bastion's token; its tools are listed with the first caller's token; a caller without that provider's
account gets a clear error and the server is not called."""

from __future__ import annotations

from typing import Any

import pytest

from bastion import App
from bastion.compose import build
from bastion.store import MemoryStore
from tests.browser import cookie_header
from tests.clients import asgi_client
from tests.gateway.test_remote import SEEN, backend, call, listed_names
from tests.local_server import free_port, serve_in_thread
from tests.oauth.conftest import (
    UPSTREAM_SECRET_ENV,
    code_exchange,
    query_of,
    settings,
    upstream_entry,
)
from tests.oauth.test_upstream_login import FakeProvider, to_provider


def configured(backend_url: str) -> Any:
    base = settings(dev_login=False, upstream=[upstream_entry("fake")])
    server = {"name": "notes", "url": backend_url, "prefix": "notes_", "upstream": "fake"}
    return base.model_copy(update={"gateway": base.gateway.model_validate({"servers": [server]})})


async def signed_in_with_fake(client) -> str:
    state, cookies, client_id = await to_provider(client)
    done = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(cookies))
    tokens = await client.post("/token", data=code_exchange(query_of(done)["code"], client_id, resource=None))
    return str(tokens.json()["access_token"])


async def test_the_server_sees_each_callers_own_upstream_token(monkeypatch):
    monkeypatch.setenv(UPSTREAM_SECRET_ENV, "not-used-by-the-fake")
    SEEN.clear()
    with serve_in_thread(backend(), free_port()) as backend_url:
        surface = build(
            App("front"), configured(f"{backend_url}/mcp"), store=MemoryStore(), upstream={"fake": FakeProvider()}
        )
        await surface.lifecycle.start()
        try:
            async with asgi_client(surface) as http:
                fake_user = {"authorization": f"Bearer {await signed_in_with_fake(http)}"}
                # Nothing listed yet: the server opens only to a caller's token; this caller's listing lists it.
                assert await listed_names(http, fake_user) == {"notes_echo", "notes_whoami", "notes_secret_reset"}
                answer = await call(http, fake_user, "notes_whoami", {})
                assert answer.json()["result"]["content"][0]["text"] == "seen"
                assert SEEN == [{"authorization": "Bearer fake-at"}]
        finally:
            await surface.lifecycle.stop()


async def test_a_caller_without_the_providers_account_is_told_so():
    from bastion.gateway.client import BackendUnavailable
    from bastion.gateway.remote import bearer_of
    from bastion.principal import Principal

    with pytest.raises(BackendUnavailable, match="it needs your fake account"):
        await bearer_of(Principal("dev:ann", "client-1"), "fake")
