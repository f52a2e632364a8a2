"""What the tests of external issuers share: an app with two tools, settings naming tests/jwt_issuer.py's local
issuer, calls to /mcp with a bearer token, and a bearer gate put together by hand on a clock the test moves."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bastion import App, Context
from bastion.resource.bearer import BearerGate
from bastion.resource.challenge import Challenges
from bastion.resource.issuer import ExternalIssuer
from bastion.resource.tokens import TokenVerifier
from bastion.settings import Settings
from tests.clients import BASE, asgi_client, local_settings
from tests.jwt_issuer import INTROSPECTION_CLIENT, LocalIssuer

__all__ = ["BASE"]  # the resource tests take it from here
from tests.mcp.conftest import modern_body, modern_headers

RESOURCE = f"{BASE}/mcp"


def issuer_app(ran: list[str] | None = None) -> App:
    """Two tools; each notes its name in `ran` when it runs (a refused call must leave `ran` as it was)."""
    app = App("external")
    ran = [] if ran is None else ran

    @app.tool
    def who_am_i(ctx: Context) -> str:
        ran.append("who_am_i")
        p = ctx.principal
        assert p is not None
        return json.dumps({"subject": p.subject, "client": p.client_id, "scopes": sorted(p.scopes)})

    @app.tool(scopes=["notes:write"])
    def add_note(text: str) -> str:
        ran.append("add_note")
        return f"added {text}"

    return app


def settings_for(issuer: LocalIssuer, **resource) -> Settings:
    entry = {"name": "corp", "issuer": issuer.issuer, **resource.pop("entry", {})}
    return local_settings(resource={"issuers": [entry], **resource})


def introspecting(issuer: LocalIssuer, monkeypatch, **sections) -> Settings:
    """Settings with introspection credentials for the issuer (and any other sections, e.g. Bastion's own
    authorization server)."""
    monkeypatch.setenv("INTROSPECTION_SECRET", INTROSPECTION_CLIENT[1])
    entry = {
        "name": "corp",
        "issuer": issuer.issuer,
        "introspection_client_id": INTROSPECTION_CLIENT[0],
        "introspection_client_secret_env": "INTROSPECTION_SECRET",
    }
    return local_settings(resource={"issuers": [entry]}, **sections)


class Behind:
    """What a hand-built gate protects: records each request that got through."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.ran.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def gated(settings: Settings, clock: Callable[[], float], behind: Behind) -> AsyncIterator[httpx.AsyncClient]:
    """The bearer gate, the token router and the settings' first external issuer, put together by hand as app.py
    does, but with the issuer on `clock`: its metadata and key caches, refusals and rate limit."""
    async with httpx.AsyncClient() as outbound:
        verify = TokenVerifier(None, [ExternalIssuer(settings.resource.issuers[0], outbound, clock=clock)])
        async with asgi_client(BearerGate(behind, verify, Challenges(None, "/mcp"))) as http:
            yield http


async def present(http: httpx.AsyncClient, token: str) -> httpx.Response:
    """A request to a hand-built gate."""
    return await http.post("/mcp", headers={"authorization": f"Bearer {token}"}, json={})


async def call(http: httpx.AsyncClient, token: str, tool: str = "who_am_i", arguments: dict | None = None, **headers):
    headers = {**modern_headers("tools/call", tool), "authorization": f"Bearer {token}", **headers}
    return await http.post(
        "/mcp", headers=headers, json=modern_body("tools/call", {"name": tool, "arguments": arguments or {}})
    )


def who(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.json()["result"]["content"][0]["text"])


def refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json() == {"error": "invalid_token"}


def unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"error": "temporarily_unavailable"}


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_by_hand(issuer: LocalIssuer, extra_header: dict, claims: dict | bytes) -> str:
    """RS256 over exactly this header and these claims (a dict, or the raw JSON bytes), with no library
    adjusting either."""
    header = {"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt", **extra_header}
    signing_input = f"{b64(header)}.{b64(claims)}".encode()
    return f"{signing_input.decode()}.{b64(issuer.rsa_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256()))}"
