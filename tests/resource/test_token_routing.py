"""A token is only ever shown to whoever could have issued it (issue 9, item 2).

Bastion's own authorization server and an external issuer with introspection run side by side; the issuer
(tests/jwt_issuer.py) lists every token it was asked about, so each test can show that a token never left.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from bastion.resource.tokens import own_shaped
from tests.clients import asgi_client
from tests.oauth.conftest import authorize_params, code_exchange, query_of, register, sign_in
from tests.resource.support import RESOURCE, call, introspecting, issuer_app, refused, who


@pytest.fixture
async def both(issuer, monkeypatch):
    """Bastion's own authorization server beside the introspecting external issuer."""
    settings = introspecting(
        issuer, monkeypatch, store={"backend": "memory"}, authorization_server={"enabled": True, "dev_login": True}
    )
    async with asgi_client(issuer_app(), settings) as http:
        yield http


@pytest.fixture
async def external_only(issuer, monkeypatch):
    async with asgi_client(issuer_app(), introspecting(issuer, monkeypatch)) as http:
        yield http


async def own_tokens(http: httpx.AsyncClient) -> dict[str, str]:
    """An access token, its refresh token and the code they were redeemed from (now used)."""
    registered = await register(http)
    code = query_of(await sign_in(http, authorize_params(registered["client_id"])))["code"]
    response = await http.post("/token", data=code_exchange(code, registered["client_id"]))
    assert response.status_code == 200, response.text
    return {**response.json(), "code": code}


def opaque_answer(issuer, **overrides) -> dict:
    live = {"active": True, "sub": "bob", "client_id": "c2", "scope": "notes:read", "aud": RESOURCE}
    return {**live, "iss": issuer.issuer, "exp": int(time.time()) + 60, **overrides}


async def test_every_kind_of_own_token_has_the_shape_that_never_leaves(both):
    # tokens.OWN_SHAPE is written down apart from oauth/grants.py, which mints the tokens: this keeps them in step.
    tokens = await own_tokens(both)
    for kind in ("access_token", "refresh_token", "code"):
        assert own_shaped(tokens[kind]), kind


@pytest.mark.parametrize("kind", ["refresh_token", "code", "access token under another Host", "garbage"])
async def test_own_tokens_the_own_server_refuses_are_never_introspected(both, issuer, kind):
    tokens = await own_tokens(both)
    asked_before = list(issuer.introspected)
    host = {}
    if kind == "access token under another Host":
        token, host = tokens["access_token"], {"host": "localhost:8000"}
    elif kind == "garbage":
        token = f"{secrets.token_urlsafe(16)}.{secrets.token_urlsafe(32)}"
    else:
        token = tokens[kind]
    # Even registered at the issuer as live, so that a leak would also be let in, not only seen.
    issuer.opaque_tokens[token] = opaque_answer(issuer, aud=[RESOURCE, "http://localhost:8000/mcp"])
    try:
        refused(await call(both, token, **host))
        refused(await call(both, token, **host))  # and not on a second try either (nothing cached as "ask")
    finally:
        del issuer.opaque_tokens[token]
    assert issuer.introspected == asked_before
    # Refusing it revoked nothing: the access token still works where it belongs.
    assert who(await call(both, tokens["access_token"]))["subject"] == "dev:alice"


@pytest.mark.parametrize(
    "token", ["abc.def", ".x", "x.", "ya29.a0AfH6SMBx", "ory_at_" + "A" * 43 + "." + "B" * 43, "a b.c", "."]
)
async def test_with_the_own_server_running_anything_with_one_dot_is_decided_locally(both, issuer, token):
    issuer.opaque_tokens[token] = opaque_answer(issuer)
    asked_before = list(issuer.introspected)
    try:
        refused(await call(both, token))
    finally:
        del issuer.opaque_tokens[token]
    assert issuer.introspected == asked_before


async def test_jwts_are_never_introspected(both, issuer):
    other = "https://elsewhere.example"
    header_and_claims = issuer.mint(issuer.claims(RESOURCE)).rsplit(".", 1)[0]
    jwts = [
        issuer.mint(issuer.claims(RESOURCE, iss=other)),  # names another issuer
        issuer.mint(issuer.claims(RESOURCE), kid="unknown"),  # names this one, but no key fits
        header_and_claims + ".AAAA",  # names this one, bad signature
        issuer.mint({k: v for k, v in issuer.claims(RESOURCE).items() if k != "iss"}),  # names none
        "a.b.c",
        "..",
    ]
    asked_before = list(issuer.introspected)
    for token in jwts:
        issuer.opaque_tokens[token] = opaque_answer(issuer)
        refused(await call(both, token))
    assert issuer.introspected == asked_before
    assert who(await call(both, issuer.mint(issuer.claims(RESOURCE))))["subject"] == "corp:alice"


async def test_opaque_tokens_still_reach_the_issuer_beside_the_own_server(both, issuer):
    token = issuer.opaque(opaque_answer(issuer))
    assert "." not in token
    assert who(await call(both, token)) == {"subject": "corp:bob", "client": "c2", "scopes": ["notes:read"]}
    assert issuer.introspected[-1] == token
    own = (await own_tokens(both))["access_token"]
    assert who(await call(both, own))["subject"] == "dev:alice"
    assert own not in issuer.introspected


async def test_without_the_own_server_its_exact_shape_still_never_leaves(external_only, issuer):
    # A Bastion token from an earlier configuration (or another Bastion) may be live, or live again later.
    token = f"{secrets.token_urlsafe(16)}.{secrets.token_urlsafe(32)}"
    issuer.opaque_tokens[token] = opaque_answer(issuer)
    asked_before = list(issuer.introspected)
    refused(await call(external_only, token))
    assert issuer.introspected == asked_before
    # Other one-dot opaque tokens (Google's, Ory Hydra's) are the issuer's to judge when Bastion issues none.
    dotted = "ya29." + secrets.token_urlsafe(30)
    issuer.opaque_tokens[dotted] = opaque_answer(issuer)
    assert who(await call(external_only, dotted))["subject"] == "corp:bob"
    assert issuer.introspected == [*asked_before, dotted]
