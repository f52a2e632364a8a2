"""An identity provider's discovery document, served by a local stand-in: every endpoint in it must be an absolute
https URL (http only on loopback), with no user information or fragment, and the issuer must match exactly;
otherwise the sign-in ends on a clean 502 page, the browser is never sent anywhere, and the log names the field."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.store import keys
from tests.browser import consent, set_cookies
from tests.clients import asgi_client
from tests.local_server import free_port, serve_in_thread
from tests.mcp.conftest import build_app

from .conftest import BASE, authorize_params, register, settings, store_of


class Discovery:
    """A provider's well-known document, replaceable per test; counts every request it is sent."""

    def __init__(self) -> None:
        self.issuer = ""
        self.document: dict[str, Any] = {}
        self.requests: list[str] = []

    def good(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "op_policy_uri": "https://idp.example/policy#terms",  # for people to read, never used: not checked
        }

    async def serve(self, request: Request) -> Response:
        self.requests.append(request.url.path)
        if request.url.path == "/.well-known/openid-configuration":
            return JSONResponse(self.document)
        return Response("not here", 404)


@pytest.fixture(scope="module")
def discovery() -> Iterator[Discovery]:
    state = Discovery()
    app = Starlette(routes=[Route("/{path:path}", state.serve)])
    with serve_in_thread(app, free_port()) as base:
        state.issuer = base
        yield state


@pytest.fixture
async def browser(discovery: Discovery, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    discovery.document = discovery.good()
    discovery.requests.clear()
    monkeypatch.setenv("BASTION_TEST_IDP_SECRET", "idp-client-secret")
    upstream = {
        "name": "idp",
        "issuer": discovery.issuer,
        "client_id": "bastion",
        "client_secret_env": "BASTION_TEST_IDP_SECRET",
        "scopes": ["openid"],
    }
    async with asgi_client(build_app(), settings(dev_login=False, upstream=[upstream])) as client:
        yield client


async def approve(client: httpx.AsyncClient) -> httpx.Response:
    """Register an app, start its authorization and approve on the consent screen: Bastion's answer."""
    app = await register(client)
    start = await client.get("/authorize", params=authorize_params(app["client_id"]))
    assert start.status_code == 302 and start.headers["location"].startswith("/consent?")
    return await consent(client, BASE + start.headers["location"])


async def test_a_good_document_sends_the_browser_to_its_authorization_endpoint(browser, discovery):
    answer = await approve(browser)
    assert answer.is_redirect  # 302 or 303 after the consent form's POST
    assert answer.headers["location"].startswith(f"{discovery.issuer}/authorize?response_type=code&")


async def test_an_endpoint_with_a_query_keeps_it(browser, discovery):
    discovery.document["authorization_endpoint"] = f"{discovery.issuer}/authorize?tenant=acme"
    answer = await approve(browser)
    assert answer.headers["location"].startswith(f"{discovery.issuer}/authorize?tenant=acme&response_type=code&")


BAD_URLS = [
    "javascript:alert(document.domain)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
    "vbscript:msgbox(1)",
    "about:blank",
    "/authorize",
    "authorize",
    "//evil.example/authorize",
    "http://idp.example/authorize",
    "HTTP://idp.example/authorize",
    "http://127.0.0.1.evil.example/authorize",
    "https://user:pass@idp.example/authorize",
    "https://idp.example@evil.example/authorize",
    "https://idp.example/authorize#fragment",
    "https://idp.example/authorize#",
    "https:///authorize",
    "https:idp.example/authorize",
    "https://idp.example:99999/authorize",
    "https://idp.example/author ize",
    " https://idp.example/authorize",
    "https://idp.example/authorize\r\nSet-Cookie: x=1",
    "https://idp.example\\@evil.example/",
    "https://idp.exämple/authorize",
    "",
    42,
    None,
    ["https://idp.example/authorize"],
]


def assert_refused_cleanly(answer: httpx.Response, caplog: pytest.LogCaptureFixture, field: str) -> None:
    assert answer.status_code == 502 and "location" not in answer.headers
    assert "Sign-in with idp is unavailable" in answer.text
    for leak in ("javascript", "evil.example", "idp.example", "file:", "data:"):
        assert leak not in answer.text.lower()
    assert not any(name.endswith("-state") for name in set_cookies(answer))  # no upstream sign-in was started
    lines = [r.getMessage() for r in caplog.records if r.name == "bastion.identity" and r.levelno >= logging.WARNING]
    assert any(f"discovery document refused: {field} " in line for line in lines), lines


@pytest.mark.parametrize("value", BAD_URLS, ids=repr)
async def test_a_bad_authorization_endpoint_never_reaches_the_browser(browser, discovery, caplog, value):
    discovery.document["authorization_endpoint"] = value
    store = store_of(browser)
    answer = await approve(browser)
    assert_refused_cleanly(answer, caplog, "authorization_endpoint")
    assert await store.keys(keys.kind_prefix("upstream")) == []  # no state was stored


FIELDS = [
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "end_session_endpoint",
    "registration_endpoint",
    "introspection_endpoint",
    "pushed_authorization_request_endpoint",
    "device_authorization_endpoint",
    "check_session_iframe",
]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ["javascript:alert(1)", "http://idp.example/x", "https://idp.example/x#f", "/x"])
async def test_every_endpoint_in_the_document_is_checked(browser, discovery, caplog, field, value):
    discovery.document[field] = value
    answer = await approve(browser)
    assert_refused_cleanly(answer, caplog, field)


async def test_a_missing_authorization_or_token_endpoint_is_refused(browser, discovery, caplog):
    del discovery.document["token_endpoint"]
    assert_refused_cleanly(await approve(browser), caplog, "token_endpoint")


@pytest.mark.parametrize("issuer", ["{base}/", "{base}/other", "https://idp.example", "", None])
async def test_the_issuer_must_match_exactly(browser, discovery, caplog, issuer):
    discovery.document["issuer"] = issuer.format(base=discovery.issuer) if isinstance(issuer, str) else issuer
    answer = await approve(browser)
    assert answer.status_code == 502 and "location" not in answer.headers
    assert any("issuer is not exactly" in r.getMessage() for r in caplog.records if r.name == "bastion.identity")


async def test_the_consent_page_does_not_let_a_bad_endpoint_into_its_policy(browser, discovery):
    discovery.document["authorization_endpoint"] = "https://user:pass@idp.example/authorize"
    app = await register(browser)
    start = await browser.get("/authorize", params=authorize_params(app["client_id"]))
    page = await browser.get(start.headers["location"])
    assert page.status_code == 200 and "idp.example" not in page.headers["content-security-policy"]


async def test_a_fixed_document_is_used_at_once(browser, discovery):
    """Refusals are not remembered: once the provider fixes its document, sign-in works again."""
    discovery.document["authorization_endpoint"] = "javascript:alert(1)"
    refused = await approve(browser)
    assert refused.status_code == 502 and "Sign-in with idp is unavailable" in refused.text
    discovery.document = discovery.good()
    assert (await approve(browser)).headers["location"].startswith(f"{discovery.issuer}/authorize?")
