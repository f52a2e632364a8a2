import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bastion.settings import Settings
from tests.browser import walk
from tests.clients import BASE, asgi_client, local_settings, store_of
from tests.clocks import Clock
from tests.mcp.conftest import build_app

__all__ = ["BASE", "store_of"]  # shared with the tests of this folder
RESOURCE = f"{BASE}/mcp"
REDIRECT = "http://127.0.0.1:3000/callback"
VERIFIER = "test-verifier-" + "x" * 40


def challenge(verifier: str = VERIFIER) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def settings(**auth) -> Settings:
    return local_settings(
        store={"backend": "memory"}, authorization_server={"enabled": True, "dev_login": True, **auth}
    )


@pytest.fixture
async def oauth():
    async with asgi_client(build_app(), settings()) as client:
        yield client


@pytest.fixture
def clock() -> Clock:
    """A wall clock the test moves (hand it to a store: `MemoryStore(clock=clock)`)."""
    return Clock()


async def register(client: httpx.AsyncClient, **metadata) -> dict:
    body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Test", **metadata}
    response = await client.post("/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def authorize_params(client_id: str, **overrides) -> dict:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "st4te",
        "code_challenge": challenge(),
        "code_challenge_method": "S256",
        "resource": RESOURCE,
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


async def sign_in(client: httpx.AsyncClient, params: dict, username: str = "alice") -> httpx.Response:
    """Walk /authorize, the consent screen and the dev login like a browser; returns the redirect to the client."""
    return await walk(client, str(httpx.URL(f"{BASE}/authorize", params=params)), username)


def query_of(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def code_exchange(code: str, client_id: str | None = None, **extra: str | None) -> dict[str, str]:
    """The /token form redeeming `code` with the tests' redirect URI and verifier, for this server's resource
    (resource=None leaves it out; other keywords add or replace fields)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "client_id": client_id,
        "resource": RESOURCE,
        **extra,
    }
    return {k: v for k, v in form.items() if v is not None}


def refresh_exchange(refresh_token: str, client_id: str | None, **extra: str) -> dict[str, str]:
    """The /token form renewing with `refresh_token` (other keywords add fields: scope, resource)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra}
    return {k: v for k, v in form.items() if v is not None}


async def tokens_for(
    client: httpx.AsyncClient, registered: dict, scope: str | None = None, username: str = "alice"
) -> dict:
    params = authorize_params(registered["client_id"], scope=scope)
    back = query_of(await sign_in(client, params, username))
    response = await client.post("/token", data=code_exchange(back["code"], registered["client_id"]))
    assert response.status_code == 200, response.text
    return response.json()


UPSTREAM_SECRET_ENV = "BASTION_TEST_UPSTREAM_SECRET"


def upstream_entry(name: str, label: str | None = None) -> dict:
    """An [[authorization_server.upstream]] entry for a provider the test substitutes (compose.build(upstream=...)):
    the settings say which sign-in methods exist, the test supplies what answers for the provider."""
    entry = {"name": name, "issuer": f"https://{name}.example", "client_id": "bastion"}
    return {**entry, "client_secret_env": UPSTREAM_SECRET_ENV, **({"label": label} if label else {})}


def authorization_server_of(client: httpx.AsyncClient):
    """The authorization server object behind a test client's app (for tests that look at its grants)."""
    routes = client._transport.app.router.routes
    return next(r.endpoint.__self__ for r in routes if getattr(r, "path", "") == "/authorize")
