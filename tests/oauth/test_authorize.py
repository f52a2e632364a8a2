"""/authorize, rule by rule: errors before the client and its redirect URI are known render a page and never
redirect; later ones go back to the client with error, state and iss; nothing is issued."""

import pytest

from tests.browser import consent

from .conftest import BASE, REDIRECT, RESOURCE, authorize_params, query_of, register


async def assert_page(oauth, params, status=400):
    response = await oauth.get("/authorize", params=params)
    assert response.status_code == status and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    return response


async def test_unknown_client_renders_a_page(oauth):
    await assert_page(oauth, authorize_params("no-such-client"))
    await assert_page(oauth, authorize_params(""))


@pytest.mark.parametrize(
    "redirect",
    [
        "http://127.0.0.1:3000/callback/extra",
        "http://127.0.0.1:3000/Callback",
        "http://127.0.0.1:3000/callback?x=1",
        "http://127.0.0.1.evil.example:3000/callback",
        "https://127.0.0.1:3000/callback",
        "http://localhost:3000/callback",  # another loopback name is another URI
        "javascript:alert(1)//http://127.0.0.1:3000/callback",
        "http://127.0.0.1:3000/callback#frag",
        "http://evil.example/callback",
        "http://127.0.0.1:3000/callback ",
        "http://user@127.0.0.1:3000/callback",
    ],
)
async def test_redirect_uri_must_match_exactly(oauth, redirect):
    client = await register(oauth)
    response = await assert_page(oauth, authorize_params(client["client_id"], redirect_uri=redirect))
    assert "evil" not in response.headers.get("location", "")


async def test_loopback_redirects_may_use_any_port(oauth):
    client = await register(oauth)
    response = await oauth.get(
        "/authorize", params=authorize_params(client["client_id"], redirect_uri="http://127.0.0.1:51234/callback")
    )
    assert response.status_code == 302 and response.headers["location"].startswith("/consent")


async def test_repeated_parameters_are_refused_without_redirect(oauth):
    client = await register(oauth)
    query = "&".join(f"{k}={v}" for k, v in authorize_params(client["client_id"]).items())
    for repeated in ("client_id=other", "redirect_uri=http://evil.example/", "state=again", "resource=x"):
        response = await oauth.get(f"/authorize?{query}&{repeated}")
        assert response.status_code == 400 and "location" not in response.headers


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": None}, "unsupported_response_type"),
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"code_challenge": "a" * 129}, "invalid_request"),
        ({"code_challenge": "a" * 42 + "!"}, "invalid_request"),
        ({"resource": "http://127.0.0.1:8000/other"}, "invalid_target"),
        ({"resource": "https://evil.example/mcp"}, "invalid_target"),
        ({"scope": "mcp admin"}, "invalid_scope"),
    ],
)
async def test_bad_requests_return_to_the_client_with_state_and_iss(oauth, overrides, error):
    client = await register(oauth)
    response = await oauth.get("/authorize", params=authorize_params(client["client_id"], **overrides))
    assert response.status_code == 302
    assert response.headers["location"].startswith(REDIRECT + "?")
    back = query_of(response)
    assert back["error"] == error and back["state"] == "st4te" and back["iss"] == BASE
    assert "code" not in back


async def test_resource_may_be_omitted_and_defaults_to_this_server(oauth):
    client = await register(oauth)
    response = await oauth.get("/authorize", params=authorize_params(client["client_id"], resource=None))
    assert response.status_code == 302 and response.headers["location"].startswith("/consent")


async def test_a_transaction_is_single_use(oauth):
    client = await register(oauth)
    start = await oauth.get("/authorize", params=authorize_params(client["client_id"]))
    approved = await consent(oauth, BASE + start.headers["location"])
    transaction = approved.headers["location"].split("transaction=")[1]
    first = await oauth.post("/login/dev", data={"transaction": transaction, "username": "alice"})
    assert first.status_code == 302 and "code=" in first.headers["location"]
    again = await oauth.post("/login/dev", data={"transaction": transaction, "username": "mallory"})
    assert again.status_code == 400 and "location" not in again.headers
    forged = await oauth.post("/login/dev", data={"transaction": "forged", "username": "mallory"})
    assert forged.status_code == 400


async def test_dev_login_escapes_and_validates(oauth):
    page = await oauth.get("/login/dev", params={"transaction": '"><script>alert(1)</script>'})
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    bad_name = await oauth.post("/login/dev", data={"transaction": "x", "username": "<b>bob</b>"})
    assert bad_name.status_code == 400 and "<b>bob" not in bad_name.text


async def test_resource_identifiers(oauth):
    assert RESOURCE.endswith("/mcp")
