"""Upstream sign-in in process, with a fake provider: state lifetime and binding, provider failures, and the
OpenID Connect ID-token checks."""

import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from bastion.compose import build
from bastion.identity.login import EXPIRED, STATE_SECONDS
from bastion.identity.oidc import OIDCProvider
from bastion.identity.upstream import UpstreamIdentity, UpstreamLoginError
from bastion.store import MemoryStore, keys
from tests.browser import consent, cookie_header, form_fields, set_cookies
from tests.clients import asgi_client, records
from tests.mcp.conftest import build_app

from .conftest import (
    BASE,
    REDIRECT,
    UPSTREAM_SECRET_ENV,
    authorization_server_of,
    authorize_params,
    code_exchange,
    query_of,
    register,
    settings,
    store_of,
    upstream_entry,
)


class FakeProvider:
    name = "fake"

    def __init__(self) -> None:
        self.fail = False
        self.exchanged: list[str] = []  # every code it was asked to exchange

    async def discovery(self):
        return {"authorization_endpoint": "https://idp.example/authorize"}

    async def authorization_url(self, redirect_uri, state, code_challenge, nonce):
        return f"https://idp.example/authorize?state={state}&redirect_uri={redirect_uri}"

    async def exchange(self, code, redirect_uri, code_verifier, nonce):
        self.exchanged.append(code)
        if self.fail:
            raise UpstreamLoginError("fake refused the code exchange")
        return UpstreamIdentity("u-42", {"name": "Fay"}, {"access_token": "fake-at", "scopes": ["read"]})

    async def refresh(self, token):
        return None

    async def revoke(self, token):
        return None


@pytest.fixture
async def fake(monkeypatch, clock):
    # The settings name one sign-in method, "fake"; the test supplies what answers for that provider. The store's
    # clock is the test's, so that the records' lifetimes (the upstream state's among them) pass when it says.
    monkeypatch.setenv(UPSTREAM_SECRET_ENV, "not-used-by-the-fake")
    provider = FakeProvider()
    asgi = build(
        build_app(),
        settings(dev_login=False, upstream=[upstream_entry("fake")]),
        store=MemoryStore(clock=clock),
        upstream={"fake": provider},
    )
    async with asgi_client(asgi) as client:
        yield client, provider


async def to_provider(client) -> tuple[str, dict[str, str], str]:
    app = await register(client)
    start = await client.get("/authorize", params=authorize_params(app["client_id"]))
    approved = await consent(client, BASE + start.headers["location"])
    assert approved.headers["location"].startswith("https://idp.example/authorize")
    cookies = set_cookies(approved)
    assert any(name.startswith("__Host-bastion-fake-") and name.endswith("-state") for name in cookies)
    state = parse_qs(urlsplit(approved.headers["location"]).query)["state"][0]
    return state, {k: v for k, v in cookies.items() if k.endswith("-state")}, app["client_id"]


async def test_the_callback_completes_with_the_provider_identity(fake):
    client, _ = fake
    state, cookies, client_id = await to_provider(client)
    done = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(cookies))
    assert done.status_code == 302 and done.headers["location"].startswith(REDIRECT)
    [name] = cookies
    assert f"{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0" in done.headers.get_list("set-cookie")
    tokens = await client.post("/token", data=code_exchange(query_of(done)["code"], client_id, resource=None))
    assert tokens.status_code == 200
    store = store_of(client)
    grants = authorization_server_of(client).grants
    principal = await grants.verify(tokens.json()["access_token"], f"{BASE}/mcp")
    assert principal.subject == "fake:u-42" and principal.upstream_token("fake", ["read"]) == "fake-at"
    assert "fake-at" not in json.dumps([await store.get(k) for k in await store.keys("")])


async def test_a_state_in_its_last_second_still_completes(fake, clock):
    client, provider = fake
    state, cookies, _ = await to_provider(client)
    clock.now += STATE_SECONDS - 1
    done = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(cookies))
    assert done.status_code == 302 and done.headers["location"].startswith(REDIRECT)
    assert "code" in query_of(done) and provider.exchanged == ["c"]


async def test_an_expired_state_is_refused(fake, clock):
    client, provider = fake
    state, cookies, _ = await to_provider(client)
    assert await records(client, keys.kind_prefix(keys.UPSTREAM_STATE))  # the state is there until its time is up
    clock.now += STATE_SECONDS
    before = await records(client)
    expired = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(cookies))
    assert expired.status_code == 400 and EXPIRED in expired.text and "location" not in expired.headers
    assert provider.exchanged == []  # the code never reached the provider
    assert await records(client) == before  # nothing written: no grant, no code
    assert await records(client, keys.kind_prefix(keys.UPSTREAM_STATE)) == {}


async def test_a_provider_failure_is_a_clear_page_and_uses_up_the_state(fake):
    client, provider = fake
    state, cookies, _ = await to_provider(client)
    provider.fail = True
    failed = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(cookies))
    assert failed.status_code == 502 and "fake refused" in failed.text and "location" not in failed.headers
    assert await records(client, keys.kind_prefix(keys.GRANT)) == {}  # nothing granted
    provider.fail = False
    again = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(cookies))
    assert again.status_code == 400 and "This sign-in has expired or was already completed." in again.text
    assert await records(client, keys.kind_prefix(keys.GRANT)) == {}


def id_token(**claims) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


GOOD = {"iss": "https://idp.example", "aud": "bastion", "sub": "u-1", "nonce": "n0nce", "exp": time.time() + 300}


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"iss": "https://evil.example"}, "someone else"),
        ({"aud": "another-client"}, "someone else"),
        ({"aud": ["x", "y"]}, "someone else"),
        ({"exp": time.time() - 3600}, "expired"),
        ({"nonce": "other"}, "this sign-in"),
        ({"nonce": None}, "this sign-in"),
        ({"sub": ""}, "no user"),
    ],
)
def test_id_token_checks(changes, needle):
    provider = OIDCProvider("idp", "https://idp.example", "bastion", "secret", ["openid"])
    assert provider._check_id_token(id_token(**GOOD), "n0nce")["sub"] == "u-1"
    with pytest.raises(UpstreamLoginError, match=needle):
        provider._check_id_token(id_token(**{**GOOD, **changes}), "n0nce")
    for junk in (None, "not-a-jwt", "a.!!!.c", id_token(**GOOD).replace(".", "", 1)):
        with pytest.raises(UpstreamLoginError):
            provider._check_id_token(junk, "n0nce")


class OtherProvider(FakeProvider):
    name = "other"

    async def discovery(self):
        return {"authorization_endpoint": "https://other.example/authorize"}

    async def authorization_url(self, redirect_uri, state, code_challenge, nonce):
        return f"https://other.example/authorize?state={state}"


@pytest.fixture
async def several(monkeypatch):
    monkeypatch.setenv(UPSTREAM_SECRET_ENV, "not-used-by-the-fakes")
    entries = [upstream_entry("fake", "Fake ID"), upstream_entry("other", "Other")]
    providers = {"fake": FakeProvider(), "other": OtherProvider()}
    asgi = build(build_app(), settings(upstream=entries), upstream=providers)  # dev login, plus two providers
    async with asgi_client(asgi) as client:
        yield client


async def test_several_sign_in_methods_become_buttons_on_the_consent_screen(several):
    client = several
    app = await register(client)
    start = await client.get("/authorize", params=authorize_params(app["client_id"]))
    page = await client.get(start.headers["location"])
    for label in ("Continue with dev login", "Continue with Fake ID", "Continue with Other"):
        assert label in page.text
    csp = page.headers["content-security-policy"]
    assert "https://idp.example" in csp and "https://other.example" in csp
    fields, cookies = form_fields(page.text), set_cookies(page)
    before = await records(client)
    for ambiguous in ("approve", "approve:nobody"):
        refused = await client.post("/consent", data={**fields, "decision": ambiguous}, headers=cookie_header(cookies))
        assert refused.status_code == 400 and "location" not in refused.headers
        assert "Choose Allow or Deny." in refused.text
    assert await records(client) == before  # the transaction is still waiting for a real choice
    chosen = await client.post("/consent", data={**fields, "decision": "approve:other"}, headers=cookie_header(cookies))
    assert chosen.status_code == 303 and chosen.headers["location"].startswith("https://other.example/authorize")


async def test_a_remembered_approval_returns_to_the_same_provider(several):
    client = several
    app = await register(client)
    start = await client.get("/authorize", params=authorize_params(app["client_id"]))
    page = await client.get(start.headers["location"])
    chosen = await client.post(
        "/consent",
        data={**form_fields(page.text), "decision": "approve:fake"},
        headers=cookie_header(set_cookies(page)),
    )
    state = parse_qs(urlsplit(chosen.headers["location"]).query)["state"][0]
    state_cookie = {k: v for k, v in set_cookies(chosen).items() if k.endswith("-state")}
    done = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(state_cookie))
    remembered = {k: v for k, v in set_cookies(done).items() if "approvals" in k}
    again = await client.get(
        "/authorize",
        params=authorize_params(app["client_id"]),
        headers={**cookie_header(remembered), "sec-fetch-site": "none"},
    )
    assert again.headers["location"].startswith("https://idp.example/authorize")  # fake's, no consent page
