"""/token and /revoke: client authentication exactly as registered, single-use codes, rotation, RFC 6749
section 5.2 errors, no-store."""

import base64

import pytest

from bastion.store import keys
from tests.answers import oauth_error
from tests.clients import records

from .conftest import (
    REDIRECT,
    VERIFIER,
    authorize_params,
    code_exchange,
    query_of,
    refresh_exchange,
    register,
    sign_in,
    store_of,
    tokens_for,
)


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def fresh_code(oauth, client: dict) -> str:
    return query_of(await sign_in(oauth, authorize_params(client["client_id"])))["code"]


async def test_confidential_clients_authenticate_exactly_as_registered(oauth):
    client = await register(oauth, token_endpoint_auth_method="client_secret_basic")
    cid, secret = client["client_id"], client["client_secret"]
    assert client["token_endpoint_auth_method"] == "client_secret_basic" and len(secret) >= 32
    for headers, form, status in [
        ({}, {"client_id": cid, "client_secret": secret}, 401),  # post, but registered basic
        ({}, {"client_id": cid}, 401),  # no secret at all
        (basic(cid, "wrong"), {}, 401),
        (basic("someone-else", secret), {}, 401),
        (basic(cid, secret), {"client_secret": secret}, 400),  # two methods at once
        ({"authorization": "Basic !!!"}, {}, 401),
        ({"authorization": "Bearer x"}, {}, 401),
    ]:
        code = await fresh_code(oauth, client)
        response = await oauth.post("/token", headers=headers, data=code_exchange(code, **form))
        oauth_error(response, status, "invalid_client" if status == 401 else "invalid_request")
        if headers.get("authorization", "").startswith("Basic") and status == 401:
            assert response.headers["www-authenticate"].startswith("Basic")
        # The failed attempt left the code usable by its rightful owner.
        ok = await oauth.post("/token", headers=basic(cid, secret), data=code_exchange(code))
        assert ok.status_code == 200, ok.text


async def test_client_secret_post_clients(oauth):
    client = await register(oauth, token_endpoint_auth_method="client_secret_post")
    code = await fresh_code(oauth, client)
    wrong = await oauth.post(
        "/token", headers=basic(client["client_id"], client["client_secret"]), data=code_exchange(code)
    )
    oauth_error(wrong, 401, "invalid_client")
    right = await oauth.post(
        "/token", data=code_exchange(code, client_id=client["client_id"], client_secret=client["client_secret"])
    )
    assert right.status_code == 200


async def test_public_clients_may_not_send_secrets(oauth):
    client = await register(oauth)
    assert "client_secret" not in client
    code = await fresh_code(oauth, client)
    before = await records(oauth)
    response = await oauth.post("/token", data=code_exchange(code, client_id=client["client_id"], client_secret="x"))
    oauth_error(response, 401, "invalid_client")
    assert await records(oauth) == before  # the code is not used up


async def test_code_replay_is_refused_and_revokes_the_tokens(oauth):
    client = await register(oauth)
    code = await fresh_code(oauth, client)
    first = await oauth.post("/token", data=code_exchange(code, client_id=client["client_id"]))
    assert first.status_code == 200
    replay = await oauth.post("/token", data=code_exchange(code, client_id=client["client_id"]))
    oauth_error(replay, 400, "invalid_grant")
    refresh = await oauth.post("/token", data=refresh_exchange(first.json()["refresh_token"], client["client_id"]))
    oauth_error(refresh, 400, "invalid_grant")


async def test_refresh_reuse_over_http_ends_the_grant(oauth):
    client = await register(oauth)
    first = await tokens_for(oauth, client)

    def refresh(token: str, **extra: str):
        return oauth.post("/token", data=refresh_exchange(token, client["client_id"], **extra))

    wrong_audience = await refresh(first["refresh_token"], resource="https://evil.example/mcp")
    assert wrong_audience.json()["error"] == "invalid_target"
    second = (await refresh(first["refresh_token"])).json()
    reused = await refresh(first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert (await refresh(second["refresh_token"])).json()["error"] == "invalid_grant"  # the grant is gone


@pytest.mark.parametrize(
    "form, error, status",
    [
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type", 400),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type", 400),
        ({"grant_type": "authorization_code"}, "invalid_request", 400),
        (
            {"grant_type": "authorization_code", "code": "x.y", "redirect_uri": REDIRECT, "code_verifier": VERIFIER},
            "invalid_grant",
            400,
        ),
        ({"grant_type": "authorization_code", "code": "garbage"}, "invalid_grant", 400),
        ({"grant_type": "refresh_token"}, "invalid_request", 400),
        ({"grant_type": "refresh_token", "refresh_token": "a.b"}, "invalid_grant", 400),
    ],
)
async def test_token_errors_follow_rfc_6749(oauth, form, error, status):
    client = await register(oauth)
    response = await oauth.post("/token", data={"client_id": client["client_id"], **form})
    assert response.status_code == status and response.json()["error"] == error
    assert set(response.json()) == {"error", "error_description"}


async def test_malformed_token_requests(oauth):
    client = await register(oauth)
    as_json = await oauth.post("/token", json={"grant_type": "authorization_code", "client_id": client["client_id"]})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    repeated = await oauth.post(
        "/token",
        content=f"grant_type=refresh_token&grant_type=authorization_code&client_id={client['client_id']}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert repeated.json()["error"] == "invalid_request"
    huge = await oauth.post(
        "/token", content=b"a=" + b"x" * 200_000, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert huge.status_code == 413 and huge.json()["error"] == "invalid_request"  # more in test_body_limits.py
    not_utf8 = await oauth.post(
        "/token", content=b"a=\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    oauth_error(not_utf8, 400, "invalid_request")


async def test_scopes_only_narrow_on_refresh(oauth):
    client = await register(oauth)
    tokens = await tokens_for(oauth, client)
    before = await grant_records(oauth, tokens["access_token"])
    wider = await oauth.post(
        "/token", data=refresh_exchange(tokens["refresh_token"], client["client_id"], scope="mcp admin")
    )
    oauth_error(wider, 400, "invalid_scope")
    assert await grant_records(oauth, tokens["access_token"]) == before  # the refresh token was not used up
    same = await oauth.post("/token", data=refresh_exchange(tokens["refresh_token"], client["client_id"], scope="mcp"))
    assert same.status_code == 200 and same.json()["scope"] == "mcp"


async def test_revocation_is_per_client_and_unknown_tokens_get_200(oauth):
    alice_app, other_app = await register(oauth), await register(oauth)
    tokens = await tokens_for(oauth, alice_app)
    bearer = {"authorization": f"Bearer {tokens['access_token']}"}
    from tests.mcp.conftest import modern_body, modern_headers

    async def status():
        return (
            await oauth.post("/mcp", headers={**modern_headers("tools/list"), **bearer}, json=modern_body("tools/list"))
        ).status_code

    for token in (tokens["access_token"], tokens["refresh_token"]):
        cross = await oauth.post("/revoke", data={"client_id": other_app["client_id"], "token": token})
        assert cross.status_code == 200
    assert await status() == 200  # another client could not revoke it
    unknown = await oauth.post("/revoke", data={"client_id": alice_app["client_id"], "token": "nonsense"})
    assert unknown.status_code == 200
    no_auth = await oauth.post("/revoke", data={"token": tokens["access_token"]})
    oauth_error(no_auth, 401, "invalid_client")
    assert await status() == 200  # nor could an unauthenticated request
    own = await oauth.post("/revoke", data={"client_id": alice_app["client_id"], "token": tokens["access_token"]})
    assert own.status_code == 200 and await status() == 401


async def grant_records(oauth, token: str) -> dict[str, dict]:
    store = store_of(oauth)
    grant_id = token.split(".")[0]
    # Any key naming the grant id between separators, not only those under keys.issued_under.
    owned = [k for k in await store.keys("") if k == keys.grant(grant_id) or f":{grant_id}:" in k]
    return {k: await store.get(k) for k in sorted(owned)}


async def test_another_clients_replay_of_a_used_code_or_refresh_token_revokes_nothing(oauth):
    owner, intruder = await register(oauth), await register(oauth)
    code = await fresh_code(oauth, owner)
    first = (await oauth.post("/token", data=code_exchange(code, client_id=owner["client_id"]))).json()
    second = await oauth.post("/token", data=refresh_exchange(first["refresh_token"], owner["client_id"]))
    assert second.status_code == 200
    before = await grant_records(oauth, code)
    assert {k.split(":")[0] for k in before} == {"grant", "access", "refresh", "usedcode", "rotated"}
    replays = [
        code_exchange(code, client_id=intruder["client_id"]),
        refresh_exchange(first["refresh_token"], intruder["client_id"]),
    ]
    for form in replays:
        refused = await oauth.post("/token", data=form)
        assert set(oauth_error(refused, 400, "invalid_grant")) == {"error", "error_description"}
    assert await grant_records(oauth, code) == before  # nothing revoked, nothing issued
    # The owner's own replay still ends the grant.
    replay = await oauth.post("/token", data=code_exchange(code, client_id=owner["client_id"]))
    assert replay.json()["error"] == "invalid_grant"
    assert await grant_records(oauth, code) == {}


@pytest.mark.parametrize("scope", [" ".join(f"s{i}" for i in range(3000)), "mcp " + "x" * 5000, " ".join(["mcp"] * 65)])
async def test_an_oversized_scope_on_refresh_is_invalid_scope_and_changes_nothing(oauth, scope):
    client = await register(oauth)
    tokens = await tokens_for(oauth, client)
    before = await grant_records(oauth, tokens["access_token"])
    form = refresh_exchange(tokens["refresh_token"], client["client_id"])
    refused = await oauth.post("/token", data={**form, "scope": scope})
    oauth_error(refused, 400, "invalid_scope")
    assert len(refused.content) < 200 and "x" * 50 not in refused.text
    assert await grant_records(oauth, tokens["access_token"]) == before  # the refresh token was not used up
    assert (await oauth.post("/token", data=form)).status_code == 200


async def test_a_repeated_parameter_with_a_huge_name_is_named_briefly(oauth):
    name = "n\\" + "x" * 20_000
    response = await oauth.post(
        "/token", content=f"{name}=1&{name}=2", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    description = response.json()["error_description"]
    assert "more than once" in description and len(description) < 100 and "\\" not in description
