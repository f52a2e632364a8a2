"""The authorization server on a real SQLite file that another connection has locked, or that is full: every
endpoint answers a spec-shaped 503 (OAuth JSON for the API, a plain page for the browser), the store keeps
exactly what it had, and the same request succeeds once the fault is gone. The bearer gate on /mcp answers 503
when the store cannot be read, and a write stuck on the lock does not hold up token checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

from bastion.identity.dev import DevLogin
from bastion.identity.login import UpstreamLogin
from bastion.oauth.grants import Grants
from bastion.oauth.server import AuthorizationServer, approvals, lifetimes
from bastion.oauth.transactions import Transactions
from bastion.resource.bearer import BearerGate
from bastion.resource.challenge import Challenges
from bastion.store import SQLiteStore, keys
from tests.browser import cookie_header, form_fields, set_cookies
from tests.oauth.test_upstream_login import FakeProvider
from tests.store.test_sqlite_faults import WriterStarts, fill, locked, rows, still, unfill

from .conftest import BASE, REDIRECT, authorize_params, code_exchange, refresh_exchange, settings

LOCKS = ["IMMEDIATE", "EXCLUSIVE"]
FAULTS = [*LOCKS, "full"]
REDIRECTS = (302, 303)


class Tool:
    """What the bearer gate protects: counts the requests that got through."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        await PlainTextResponse("tool ran")(scope, receive, send)


class Server:
    def __init__(self, path: Path, **store_options: Any) -> None:
        self.path = path
        self.store = SQLiteStore(path, **store_options)
        options = settings(dev_login=True).authorization_server
        # Assembled by hand (the composition root's steps, with a counting stand-in for the MCP endpoint).
        grants = Grants(self.store, lifetimes(options))
        approved = approvals(options)
        desk = Transactions(self.store, grants, approved, None)
        self.provider = FakeProvider()
        methods = [DevLogin(desk), UpstreamLogin(desk, self.store, self.provider)]
        self.auth = AuthorizationServer(options, self.store, grants, desk, approved, methods, None, None, "/mcp")
        self.tool = Tool()
        self.gate = BearerGate(self.tool, grants.verify, Challenges(None, "/mcp"))
        app = Router([*self.auth.routes(), Route("/mcp", self.gate)])
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)

    @contextlib.asynccontextmanager
    async def fault(self, kind: str) -> AsyncIterator[None]:
        """The store cannot write: locked by another connection, or full. Cleared when the block ends."""
        if kind == "full":
            await fill(self.store)
            yield
            await unfill(self.store)
        else:
            with locked(self.path, kind):
                yield

    async def close(self) -> None:
        await self.http.aclose()
        await self.store.close()


@pytest.fixture
async def server(tmp_path):
    opened = Server(tmp_path / "bastion.db", busy_seconds=0.05, clock=still)
    yield opened
    await opened.close()


# --- steps of the flow, stopped wherever a test needs to put a fault in the way ------------------------------
async def registered(http: httpx.AsyncClient) -> dict:
    response = await http.post("/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
    assert response.status_code == 201, response.text
    return response.json()


async def consent_url(http: httpx.AsyncClient, client_id: str) -> str:
    start = await http.get("/authorize", params=authorize_params(client_id))
    assert start.status_code in REDIRECTS and start.headers["location"].startswith("/consent"), start.text
    return start.headers["location"]


async def consent_form(http: httpx.AsyncClient, client_id: str) -> tuple[dict[str, str], dict[str, str]]:
    page = await http.get(await consent_url(http, client_id))
    assert page.status_code == 200, page.text
    return form_fields(page.text), cookie_header(set_cookies(page))


async def approve(http: httpx.AsyncClient, fields: dict, headers: dict, method: str = "dev") -> httpx.Response:
    return await http.post("/consent", data={**fields, "decision": f"approve:{method}"}, headers=headers)


async def login(http: httpx.AsyncClient, transaction: str) -> httpx.Response:
    return await http.post("/login/dev", data={"transaction": transaction, "username": "alice"})


async def code_for(http: httpx.AsyncClient, client_id: str) -> str:
    fields, headers = await consent_form(http, client_id)
    assert (await approve(http, fields, headers)).status_code in REDIRECTS
    back = await login(http, fields["transaction"])
    assert back.status_code in REDIRECTS, back.text
    return parse_qs(urlsplit(back.headers["location"]).query)["code"][0]


async def tokens(http: httpx.AsyncClient) -> tuple[str, dict]:
    client_id = (await registered(http))["client_id"]
    response = await http.post("/token", data=code_exchange(await code_for(http, client_id), client_id))
    assert response.status_code == 200, response.text
    return client_id, response.json()


# --- what a 503 looks like --------------------------------------------------------------------------------
def assert_oauth_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store" and response.headers["retry-after"] == "5"
    assert response.json() == {
        "error": "temporarily_unavailable",
        "error_description": "the server cannot complete this request right now; try again shortly",
    }


def assert_page_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store" and response.headers["retry-after"] == "5"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "Temporarily unavailable" in response.text
    for internal in ("sqlite", "SQLITE", "locked", "full", "Traceback", "StoreUnavailable"):
        assert internal not in response.text


def assert_logged_once_without_traceback(caplog: pytest.LogCaptureFixture, route: str, *secrets: str) -> None:
    faults = [r for r in caplog.records if r.name == "bastion.oauth" and r.getMessage().startswith("store unavail")]
    assert len(faults) == 1 and faults[0].levelno == logging.WARNING and faults[0].exc_info is None
    assert f" {route} answered 503 (sqlite: database " in faults[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    for secret in secrets:
        assert secret not in caplog.text


# --- the API endpoints ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS)
async def test_register(server, fault, caplog):
    async with server.fault(fault):
        before = rows(server.path)
        response = await server.http.post("/register", json={"redirect_uris": [REDIRECT]})
        assert_oauth_unavailable(response)
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/register")
    assert (await server.store.keys(keys.kind_prefix("client"))) == []
    await registered(server.http)


@pytest.mark.parametrize("fault", FAULTS)
async def test_token_authorization_code(server, fault, caplog):
    client_id = (await registered(server.http))["client_id"]
    code = await code_for(server.http, client_id)
    async with server.fault(fault):
        before = rows(server.path)
        assert_oauth_unavailable(await server.http.post("/token", data=code_exchange(code, client_id)))
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/token", code)
    # The code was neither used up nor taken for a replay: it still redeems, once.
    redeemed = await server.http.post("/token", data=code_exchange(code, client_id))
    assert redeemed.status_code == 200 and redeemed.json()["access_token"]


@pytest.mark.parametrize("fault", FAULTS)
async def test_token_refresh(server, fault, caplog):
    client_id, issued = await tokens(server.http)
    refresh = refresh_exchange(issued["refresh_token"], client_id)
    async with server.fault(fault):
        before = rows(server.path)
        assert_oauth_unavailable(await server.http.post("/token", data=refresh))
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/token", issued["refresh_token"])
    # Not rotated, so its next use is not taken for a reuse: the grant lives on.
    renewed = await server.http.post("/token", data=refresh)
    assert renewed.status_code == 200 and renewed.json()["refresh_token"] != issued["refresh_token"]


@pytest.mark.parametrize("fault", LOCKS)
async def test_revoke(server, fault, caplog):
    client_id, issued = await tokens(server.http)
    revoke = {"token": issued["refresh_token"], "client_id": client_id}
    async with server.fault(fault):
        before = rows(server.path)
        assert_oauth_unavailable(await server.http.post("/revoke", data=revoke))
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/revoke", issued["refresh_token"])
    bearer = {"authorization": f"Bearer {issued['access_token']}"}
    assert (await server.http.get("/mcp", headers=bearer)).status_code == 200  # still a live grant
    assert (await server.http.post("/revoke", data=revoke)).status_code == 200
    assert await server.store.keys(keys.kind_prefix("grant")) == []


async def test_revoking_on_a_full_database_still_works(server):
    # Deleting needs no new page: a full store still lets a user end a grant.
    client_id, issued = await tokens(server.http)
    async with server.fault("full"):
        revoked = await server.http.post("/revoke", data={"token": issued["refresh_token"], "client_id": client_id})
        assert revoked.status_code == 200
        assert await server.store.keys(keys.kind_prefix("grant")) == []
        assert await server.store.keys(keys.kind_prefix("refresh")) == []


# --- the browser's endpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS)
async def test_authorize(server, fault, caplog):
    client_id = (await registered(server.http))["client_id"]
    async with server.fault(fault):
        before = rows(server.path)
        assert_page_unavailable(await server.http.get("/authorize", params=authorize_params(client_id)))
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/authorize")
    assert await server.store.keys(keys.kind_prefix("authz")) == []
    await consent_url(server.http, client_id)


@pytest.mark.parametrize("fault", FAULTS)
async def test_consent_page(server, fault, caplog):
    client_id = (await registered(server.http))["client_id"]
    url = await consent_url(server.http, client_id)
    async with server.fault(fault):
        before = rows(server.path)
        page = await server.http.get(url)
        assert_page_unavailable(page)
        assert "set-cookie" not in page.headers  # no CSRF cookie for a token the store never kept
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/consent")
    assert (await server.http.get(url)).status_code == 200


@pytest.mark.parametrize("fault", LOCKS)
async def test_consent_decision(server, fault, caplog):
    client_id = (await registered(server.http))["client_id"]
    fields, headers = await consent_form(server.http, client_id)
    async with server.fault(fault):
        before = rows(server.path)
        assert_page_unavailable(await approve(server.http, fields, headers))
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/consent", fields["csrf_token"], fields["transaction"])
    # The transaction and its CSRF token are as they were: the same decision goes through now.
    assert (await approve(server.http, fields, headers)).status_code in REDIRECTS


@pytest.mark.parametrize("fault", LOCKS)
async def test_dev_login(server, fault, caplog):
    client_id = (await registered(server.http))["client_id"]
    fields, headers = await consent_form(server.http, client_id)
    assert (await approve(server.http, fields, headers)).status_code in REDIRECTS
    async with server.fault(fault):
        before = rows(server.path)
        assert_page_unavailable(await login(server.http, fields["transaction"]))
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/login/dev", fields["transaction"])
    assert await server.store.keys(keys.kind_prefix("code")) == []
    back = await login(server.http, fields["transaction"])
    assert back.status_code in REDIRECTS and "code=" in back.headers["location"]


@pytest.mark.parametrize("fault", LOCKS)
async def test_upstream_sign_in_callback(server, fault, caplog):
    client_id = (await registered(server.http))["client_id"]
    fields, headers = await consent_form(server.http, client_id)
    to_provider = await approve(server.http, fields, headers, "fake")
    assert to_provider.status_code in REDIRECTS, to_provider.text
    state = parse_qs(urlsplit(to_provider.headers["location"]).query)["state"][0]
    callback = {"params": {"code": "c", "state": state}, "headers": cookie_header(set_cookies(to_provider))}
    async with server.fault(fault):
        before = rows(server.path)
        assert_page_unavailable(await server.http.get("/callback/fake", **callback))
        assert rows(server.path) == before
    assert_logged_once_without_traceback(caplog, "/callback/fake", state)
    back = await server.http.get("/callback/fake", **callback)
    assert back.status_code in REDIRECTS and back.headers["location"].startswith(REDIRECT)


# --- the bearer gate on /mcp -------------------------------------------------------------------------------
async def test_the_gate_answers_503_when_the_store_cannot_be_read(tmp_path, caplog):
    server = Server(tmp_path / "bastion.db")
    try:
        _, issued = await tokens(server.http)
        await server.store.close()
        response = await server.http.get("/mcp", headers={"authorization": f"Bearer {issued['access_token']}"})
        assert response.status_code == 503 and response.json() == {"error": "temporarily_unavailable"}
        assert response.headers["retry-after"] == "5" and response.headers["cache-control"] == "no-store"
        assert server.tool.calls == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert "store is closed" in caplog.text and issued["access_token"] not in caplog.text
    finally:
        await server.http.aclose()


async def test_a_token_check_completes_while_a_write_waits_for_the_lock(tmp_path):
    clock = WriterStarts()
    server = Server(tmp_path / "bastion.db", busy_seconds=60, clock=clock)
    try:
        client_id, issued = await tokens(server.http)
        clock.started.clear()
        with locked(server.path):
            # A refresh reaches its commit and waits there for the lock.
            refresh = refresh_exchange(issued["refresh_token"], client_id)
            write = asyncio.ensure_future(server.http.post("/token", data=refresh))
            await asyncio.to_thread(clock.started.wait)
            checked = await server.http.get("/mcp", headers={"authorization": f"Bearer {issued['access_token']}"})
            assert checked.status_code == 200 and server.tool.calls == 1
            assert not write.done()  # verified while the write was still waiting
        assert (await write).status_code == 200
    finally:
        await server.close()
