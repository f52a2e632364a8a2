"""A whole OAuth session, logged at debug level in both formats: no line carries a token, code, secret, cookie or
session id (DESIGN.md: secrets never appear in logs). Each secret is looked for in every line of every logger."""

from __future__ import annotations

import logging
import secrets

import pytest

from bastion.ops.logs import JsonFormatter, TextFormatter
from tests.clients import asgi_client, local_settings
from tests.mcp.conftest import ACCEPT, build_app, modern_body, modern_headers
from tests.messages import initialize
from tests.oauth.conftest import (
    VERIFIER,
    authorize_params,
    code_exchange,
    query_of,
    refresh_exchange,
    register,
    sign_in,
)


async def test_a_whole_oauth_session_leaves_no_secret_in_any_log_line(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    state_secret, cookie_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    configured = local_settings(
        state_secret=state_secret,
        store={"backend": "memory"},
        authorization_server={"enabled": True, "dev_login": True, "cookie_secret": cookie_secret},
    )
    found: list[str] = [VERIFIER, state_secret, cookie_secret]
    async with asgi_client(build_app(), configured) as client:
        registered = await register(client, token_endpoint_auth_method="client_secret_post")
        client_id, client_secret = registered["client_id"], registered["client_secret"]
        found.append(client_secret)

        async def token(form: dict[str, str]):  # the confidential client authenticates with its secret
            return await client.post("/token", data={**form, "client_secret": client_secret})

        back = query_of(await sign_in(client, authorize_params(client_id)))
        found.append(back["code"])
        found += [value for value in client.cookies.values() if len(value) >= 16]  # consent, approvals, sign-in
        answer = await token(code_exchange(back["code"], client_id))
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
        found += [tokens["access_token"], tokens["refresh_token"]]
        replay = await token(code_exchange(back["code"], client_id))
        assert replay.status_code == 400  # a replayed code: refused, and the grant revoked
        back = query_of(await sign_in(client, authorize_params(client_id)))
        found.append(back["code"])
        answer = await token(code_exchange(back["code"], client_id))
        tokens = answer.json()
        found += [tokens["access_token"], tokens["refresh_token"]]
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}

        call = modern_body("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
        assert (
            await client.post("/mcp", headers={**modern_headers("tools/call", "add"), **bearer}, json=call)
        ).status_code == 200
        opened = await client.post("/mcp", headers={**ACCEPT, **bearer}, json=initialize("2025-11-25"))
        session_id = opened.headers["mcp-session-id"]
        found.append(session_id)
        legacy = {**ACCEPT, **bearer, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
        await client.post("/mcp", headers=legacy, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "crash", "arguments": {}}}
        assert (await client.post("/mcp", headers=legacy, json=body)).status_code == 200  # a tool that fails
        assert (await client.delete("/mcp", headers=legacy)).status_code == 204

        renewed = await token(refresh_exchange(tokens["refresh_token"], client_id))
        assert renewed.status_code == 200, renewed.text
        fresh = renewed.json()
        found += [fresh["access_token"], fresh["refresh_token"]]
        reused = await token(refresh_exchange(tokens["refresh_token"], client_id))
        assert reused.status_code == 400  # reuse detected: the grant revoked
        revoked = await client.post(
            "/revoke", data={"token": fresh["refresh_token"], "client_id": client_id, "client_secret": client_secret}
        )
        assert revoked.status_code == 200
        refused = await client.post(
            "/mcp",
            headers={**modern_headers("tools/call", "add"), "authorization": f"Bearer {fresh['access_token']}"},
            json=call,
        )
        assert refused.status_code == 401
        forged = await client.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": "forged-" + "c" * 40,
                "client_id": client_id,
                "client_secret": "wrong-" + "s" * 40,
            },
        )
        assert forged.status_code in (400, 401)
        found += ["forged-" + "c" * 40, "wrong-" + "s" * 40]

    lines = [formatter.format(record) for record in caplog.records for formatter in (TextFormatter(), JsonFormatter())]
    # The access log saw the whole session (each /token request, in text), so the search below can fail.
    assert sum('"POST /token" ' in line for line in lines) == 6
    assert len(set(found)) == len(found) and all(len(value) >= 16 for value in found)
    leaked = [value[:8] + "..." for value in found if any(value in line for line in lines)]
    assert leaked == []
