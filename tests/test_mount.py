"""A Bastion App mounted under a path of another ASGI application (Starlette's Mount, as FastAPI's `mount` is):
discovery, sign-in and calls work at the mounted URL, and every URL Bastion hands out names it. Served by uvicorn
on loopback, used by the official SDK client with its OAuth support."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from bastion import App, Context
from tests.e2e.test_sdk_oauth import HeadlessBrowser, MemoryStorage, call_tool_text, provider_for
from tests.local_server import free_port, serve_in_thread
from tests.oauth.conftest import settings


def mounted_app() -> tuple[Starlette, App]:
    app = App("notes")

    @app.tool
    async def who_am_i(ctx: Context) -> str:
        """Who is calling."""
        return ctx.principal.subject if ctx.principal is not None else "nobody"

    surface = app.asgi(settings())

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("the host application")

    parent = Starlette(routes=[Route("/", home), Mount("/tools", app=surface)], lifespan=surface.lifespan)
    return parent, app


@pytest.fixture(scope="module")
def base():
    parent, _ = mounted_app()
    with serve_in_thread(parent, free_port()) as url:
        yield url


async def test_every_url_bastion_hands_out_names_the_mount(base):
    async with httpx.AsyncClient(base_url=base) as http:
        refused = await http.post("/tools/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        metadata_url = f"{base}/tools/.well-known/oauth-protected-resource/mcp"
        assert f'resource_metadata="{metadata_url}"' in refused.headers["www-authenticate"]
        resource = (await http.get(metadata_url)).json()
        assert resource["resource"] == f"{base}/tools/mcp"
        assert resource["authorization_servers"] == [f"{base}/tools"]
        # The issuer has a path: the host's own well-known URLs are the host application's; the form clients try
        # last (the path, then the well-known name) is Bastion's.
        assert (await http.get("/.well-known/oauth-authorization-server/tools")).status_code == 404
        issuer = (await http.get("/tools/.well-known/openid-configuration")).json()
        assert issuer["issuer"] == f"{base}/tools"
        assert issuer["authorization_endpoint"] == f"{base}/tools/authorize"
        assert issuer["token_endpoint"] == f"{base}/tools/token"
        # Bastion's paths exist only under the mount; the host application's own routes are untouched.
        assert (await http.post("/mcp", json={})).status_code == 404
        assert (await http.get("/")).text == "the host application"
        assert (await http.get("/tools/healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_the_sdk_client_signs_in_and_calls_a_tool_at_the_mounted_url(base, mode):
    url = f"{base}/tools/mcp"
    storage, browser = MemoryStorage(), HeadlessBrowser("grace")
    assert await call_tool_text(url, provider_for(url, storage, browser), "who_am_i", mode) == "dev:grace"
    assert browser.visits == 1 and storage.tokens is not None


async def test_the_pages_redirects_and_forms_stay_under_the_mount(base):
    async with httpx.AsyncClient(base_url=base) as http:
        registered = await http.post(
            "/tools/register",
            json={"redirect_uris": ["http://127.0.0.1:53682/callback"], "token_endpoint_auth_method": "none"},
        )
        client_id = registered.json()["client_id"]
        authorize = await http.get(
            "/tools/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": "http://127.0.0.1:53682/callback",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGjSwLObsc",
                "code_challenge_method": "S256",
                "resource": f"{base}/tools/mcp",
                "state": "s",
            },
        )
        assert authorize.status_code == 302 and authorize.headers["location"].startswith("/tools/consent?")
        page = await http.get(authorize.headers["location"])
        assert page.status_code == 200 and 'action="/tools/consent"' in page.text
        assert f'href="{base}/tools/account"' in page.text
        account = await http.get("/tools/account")
        assert 'action="/tools/account/sign-in"' in account.text
