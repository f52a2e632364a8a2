"""Every authorization-server endpoint that reads a body bounds it while streaming: 413 (OAuth error JSON, or an
error page for the browser's forms), the rest never pulled, and nothing done with what was read."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

from bastion.oauth.forms import MAX_FORM_BYTES
from bastion.store import keys
from tests.bodies import CountingBody
from tests.browser import cookie_header, form_fields, set_cookies

from .conftest import (
    BASE,
    REDIRECT,
    RESOURCE,
    authorize_params,
    code_exchange,
    query_of,
    refresh_exchange,
    register,
    sign_in,
    store_of,
    tokens_for,
)

CHUNK = 1024
FORM = {"content-type": "application/x-www-form-urlencoded"}


def padded(start: bytes) -> bytes:
    return start + b"a" * (MAX_FORM_BYTES + 1 - len(start))


def oversize(way: str, start: bytes, content_type: dict[str, str]) -> tuple[dict, CountingBody | None]:
    """httpx keyword arguments for a body over the limit: declared, streamed without a length, or lying."""
    if way == "declared":
        return {"content": padded(start), "headers": content_type}, None
    if way == "lying":
        return {"content": padded(start) + b"a" * 100_000, "headers": {**content_type, "content-length": "10"}}, None
    stream = CountingBody(start, 4 * MAX_FORM_BYTES, CHUNK, b"a")  # no Content-Length: chunked
    return {"content": stream, "headers": content_type}, stream


def assert_pulled_little(stream: CountingBody | None) -> None:
    # The server stops pulling at the chunk that passes the limit.
    if stream is not None:
        assert stream.pulled <= MAX_FORM_BYTES // CHUNK + 2


def assert_413_json(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.json() == {
        "error": "invalid_request",
        "error_description": f"the request body is larger than {MAX_FORM_BYTES} bytes",
    }
    assert response.headers["cache-control"] == "no-store"


WAYS = ["declared", "chunked", "lying"]


@pytest.mark.parametrize("way", WAYS)
async def test_register(oauth, way):
    start = b'{"redirect_uris": ["' + REDIRECT.encode() + b'"], "client_name": "'
    kwargs, stream = oversize(way, start, {"content-type": "application/json"})
    assert_413_json(await oauth.post("/register", **kwargs))
    assert_pulled_little(stream)
    assert await store_of(oauth).keys(keys.kind_prefix("client")) == []  # nothing registered
    await register(oauth)  # and a registration of ordinary size works
    assert len(await store_of(oauth).keys(keys.kind_prefix("client"))) == 1


@pytest.mark.parametrize("way", WAYS)
async def test_token(oauth, way):
    registered = await register(oauth)
    code = query_of(await sign_in(oauth, authorize_params(registered["client_id"])))["code"]
    exchange = code_exchange(code, registered["client_id"])
    kwargs, stream = oversize(way, urlencode(exchange).encode() + b"&pad=", FORM)
    assert_413_json(await oauth.post("/token", **kwargs))
    assert_pulled_little(stream)
    # The code was not used: the same exchange, at an ordinary size, gets the tokens.
    answered = await oauth.post("/token", data=exchange)
    assert answered.status_code == 200 and answered.json()["access_token"]


@pytest.mark.parametrize("way", WAYS)
async def test_revoke(oauth, way):
    registered = await register(oauth)
    tokens = await tokens_for(oauth, registered)
    revoke = {"token": tokens["refresh_token"], "client_id": registered["client_id"]}
    kwargs, stream = oversize(way, urlencode(revoke).encode() + b"&pad=", FORM)
    assert_413_json(await oauth.post("/revoke", **kwargs))
    assert_pulled_little(stream)
    # Not revoked: the refresh token still works.
    refreshed = await oauth.post(
        "/token", data=refresh_exchange(tokens["refresh_token"], registered["client_id"], resource=RESOURCE)
    )
    assert refreshed.status_code == 200


def assert_413_page(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert f"larger than {MAX_FORM_BYTES} bytes" in response.text
    assert "location" not in response.headers


async def consent_page(oauth: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
    registered = await register(oauth)
    started = await oauth.get("/authorize", params=authorize_params(registered["client_id"]))
    page = await oauth.get(started.headers["location"])
    return form_fields(page.text), cookie_header(set_cookies(page))


@pytest.mark.parametrize("way", WAYS)
async def test_consent_post(oauth, way):
    fields, cookies = await consent_page(oauth)
    decision = urlencode({**fields, "decision": "approve"}).encode() + b"&pad="
    kwargs, stream = oversize(way, decision, FORM)
    kwargs["headers"] = {**kwargs["headers"], **cookies}
    assert_413_page(await oauth.post("/consent", **kwargs))
    assert_pulled_little(stream)
    # The transaction was neither approved nor used up: the same decision at an ordinary size goes through.
    approved = await oauth.post("/consent", data={**fields, "decision": "approve"}, headers=cookies)
    assert approved.status_code == 303 and approved.headers["location"].startswith("/login/dev")


@pytest.mark.parametrize("way", WAYS)
async def test_dev_login_post(oauth, way):
    fields, cookies = await consent_page(oauth)
    approved = await oauth.post("/consent", data={**fields, "decision": "approve"}, headers=cookies)
    transaction = form_fields((await oauth.get(approved.headers["location"])).text)["transaction"]
    login = urlencode({"transaction": transaction, "username": "alice"}).encode() + b"&pad="
    kwargs, stream = oversize(way, login, FORM)
    assert_413_page(await oauth.post("/login/dev", **kwargs))
    assert_pulled_little(stream)
    assert await store_of(oauth).keys(keys.kind_prefix("code")) == []  # no code issued
    # The sign-in is still open: the same form at an ordinary size completes it.
    signed_in = await oauth.post("/login/dev", data={"transaction": transaction, "username": "alice"})
    assert signed_in.status_code in (302, 303) and "code" in query_of(signed_in)


async def test_a_body_of_exactly_the_limit_is_read(oauth):
    registered = await register(oauth)
    code = query_of(await sign_in(oauth, authorize_params(registered["client_id"])))["code"]
    exchange = code_exchange(code, registered["client_id"])
    start = urlencode(exchange).encode() + b"&pad="
    body = start + b"a" * (MAX_FORM_BYTES - len(start))
    answered = await oauth.post("/token", content=body, headers=FORM)
    assert answered.status_code == 200 and answered.json()["access_token"]


async def test_a_broken_content_length_is_400(oauth):
    response = await oauth.post(f"{BASE}/token", content=b"grant_type=x", headers={**FORM, "content-length": "12, 12"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
