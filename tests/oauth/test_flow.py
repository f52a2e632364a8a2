"""The whole authorization-code flow over HTTP, in process: discover, register, authorize, sign in, token,
call /mcp, refresh, revoke."""

from bastion.mcp.errors import INVALID_REQUEST
from tests.answers import bearer_challenge, jsonrpc_error
from tests.clients import asgi_client
from tests.mcp.conftest import ACCEPT, build_app, modern_body, modern_headers
from tests.messages import initialize

from .conftest import (
    BASE,
    REDIRECT,
    RESOURCE,
    authorize_params,
    query_of,
    refresh_exchange,
    register,
    settings,
    sign_in,
    tokens_for,
)


async def test_metadata_and_challenge(oauth):
    unauthenticated = await oauth.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
    challenge = bearer_challenge(unauthenticated, 401)
    assert unauthenticated.json() == {"error": "unauthorized"}  # no token: no error code in the challenge
    assert challenge == f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"'
    prm = (await oauth.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert prm["resource"] == RESOURCE and prm["authorization_servers"] == [BASE]
    assert (await oauth.get("/.well-known/oauth-protected-resource")).json() == prm
    metadata = (await oauth.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == BASE and metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["registration_endpoint"] == f"{BASE}/register"
    assert metadata["revocation_endpoint"] == f"{BASE}/revoke"
    assert (await oauth.get("/.well-known/openid-configuration")).json() == metadata
    # The identifiers follow the Host the client used (on loopback): localhost works too.
    other = await oauth.get("/.well-known/oauth-authorization-server", headers={"host": "localhost:8000"})
    assert other.json()["issuer"] == "http://localhost:8000"


async def test_full_flow_to_a_tool_call_then_refresh_and_revoke(oauth):
    client = await register(oauth)
    back = await sign_in(oauth, authorize_params(client["client_id"]))
    assert back.status_code == 303 and back.headers["location"].startswith(REDIRECT + "?")
    answer = query_of(back)
    assert answer["state"] == "st4te" and answer["iss"] == BASE and answer["code"]

    tokens = await tokens_for(oauth, client)
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "mcp" and tokens["refresh_token"]
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    call = await oauth.post(
        "/mcp",
        headers={**modern_headers("tools/call", "add"), **bearer},
        json=modern_body("tools/call", {"name": "add", "arguments": {"a": 2, "b": 2}}),
    )
    assert call.json()["result"]["structuredContent"] == {"result": 4}

    refreshed = await oauth.post("/token", data=refresh_exchange(tokens["refresh_token"], client["client_id"]))
    assert refreshed.status_code == 200 and refreshed.headers["cache-control"] == "no-store"
    new_bearer = {"authorization": f"Bearer {refreshed.json()['access_token']}"}
    revoked = await oauth.post(
        "/revoke", data={"client_id": client["client_id"], "token": refreshed.json()["refresh_token"]}
    )
    assert revoked.status_code == 200
    after = await oauth.post(
        "/mcp", headers={**modern_headers("tools/list"), **new_bearer}, json=modern_body("tools/list")
    )
    bearer_challenge(after, 401, "invalid_token")


async def test_a_session_belongs_to_the_principal_that_opened_it(oauth):
    client = await register(oauth)

    async def bearer(username: str) -> dict[str, str]:
        tokens = await tokens_for(oauth, client, username=username)
        return {"authorization": f"Bearer {tokens['access_token']}", **ACCEPT}

    ada, mallory = await bearer("ada"), await bearer("mallory")
    session = (await oauth.post("/mcp", headers=ada, json=initialize())).headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    assert (await oauth.post("/mcp", headers={**ada, "mcp-session-id": session}, json=listing)).status_code == 200
    stolen = await oauth.post("/mcp", headers={**mallory, "mcp-session-id": session}, json=listing)
    jsonrpc_error(stolen, 404, INVALID_REQUEST)
    ended = await oauth.delete("/mcp", headers={**mallory, "mcp-session-id": session})
    jsonrpc_error(ended, 404, INVALID_REQUEST)
    # Neither ended nor took over ada's session.
    assert (await oauth.post("/mcp", headers={**ada, "mcp-session-id": session}, json=listing)).status_code == 200


async def test_an_issuer_with_a_path_publishes_path_suffixed_metadata():
    public = "https://mcp.example.com/bastion"
    configured = settings().model_copy(update={"public_url": public})
    async with asgi_client(build_app(), configured, base="https://mcp.example.com") as client:
        denied = await client.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
        prm_url = "https://mcp.example.com/.well-known/oauth-protected-resource/bastion/mcp"
        assert bearer_challenge(denied, 401) == f'Bearer resource_metadata="{prm_url}"'
        prm = (await client.get("/.well-known/oauth-protected-resource/bastion/mcp")).json()
        assert prm == {**prm, "resource": f"{public}/mcp", "authorization_servers": [public]}
        metadata = (await client.get("/.well-known/oauth-authorization-server/bastion")).json()
        assert metadata["issuer"] == public and metadata["token_endpoint"] == f"{public}/token"
        assert (await client.get("/.well-known/openid-configuration/bastion")).json() == metadata
