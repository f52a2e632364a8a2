"""/authorize, rule by rule: errors before the client and its redirect URI are known render a page and never
redirect; later ones go back to the client with error, state and iss; nothing is issued."""

import pytest

from bastion.store import keys
from tests.browser import consent, cookie_header, form_fields, set_cookies
from tests.clients import records

from .conftest import BASE, REDIRECT, authorize_params, query_of, register, sign_in, store_of

EXPIRED = "This sign-in request has expired or was already used."


async def assert_page(oauth, params, status=400):
    response = await oauth.get("/authorize", params=params)
    assert response.status_code == status and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    return response


async def test_unknown_client_renders_a_page(oauth):
    for client_id in ("no-such-client", ""):
        page = await assert_page(oauth, authorize_params(client_id))
        assert "(unknown client_id)" in page.text
    assert await records(oauth) == {}


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
    assert "redirect_uri" in response.text  # the page says which parameter is wrong
    assert await pending_transactions(oauth) == []


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
        assert "more than once" in response.text, repeated
    assert await pending_transactions(oauth) == []


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
    assert await pending_transactions(oauth) == []  # no consent screen waiting


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
    assert first.status_code == 303 and "code=" in first.headers["location"]
    issued = await records(oauth)
    again = await oauth.post("/login/dev", data={"transaction": transaction, "username": "mallory"})
    assert again.status_code == 400 and "location" not in again.headers
    assert EXPIRED in again.text
    forged = await oauth.post("/login/dev", data={"transaction": "forged", "username": "mallory"})
    assert forged.status_code == 400 and EXPIRED in forged.text
    assert await records(oauth) == issued  # no code for mallory


async def test_dev_login_escapes_and_validates(oauth):
    page = await oauth.get("/login/dev", params={"transaction": '"><script>alert(1)</script>'})
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    bad_name = await oauth.post("/login/dev", data={"transaction": "x", "username": "<b>bob</b>"})
    assert bad_name.status_code == 400 and "<b>bob" not in bad_name.text
    assert await records(oauth) == {}


# --- prompt (OpenID Connect Core 3.1.2.1) ---------------------------------------------------------------------


async def remembered_approval(oauth, client_id: str, username: str = "alice") -> dict[str, str]:
    """Sign in once (approving on the consent screen); the approvals cookie the browser keeps afterwards."""
    done = await sign_in(oauth, authorize_params(client_id), username)
    assert "code=" in done.headers["location"]
    return {k: v for k, v in set_cookies(done).items() if "approvals" in k}


def user_navigation(cookies: dict[str, str]) -> dict[str, str]:
    return {**cookie_header(cookies), "sec-fetch-site": "none"}


async def pending_transactions(oauth) -> list[str]:
    return await store_of(oauth).keys(keys.kind_prefix("authz"))


async def test_prompt_none_without_a_remembered_approval_answers_consent_required(oauth):
    client, other = await register(oauth), await register(oauth)
    remembered = await remembered_approval(oauth, other["client_id"])
    for headers in (
        {},  # no approval at all
        {"sec-fetch-site": "none"},
        user_navigation(remembered),  # approved for another client
        {**cookie_header(remembered), "sec-fetch-site": "cross-site"},
    ):
        before = await pending_transactions(oauth)
        response = await oauth.get(
            "/authorize", params=authorize_params(client["client_id"], prompt="none"), headers=headers
        )
        assert response.status_code == 302 and response.headers["location"].startswith(REDIRECT + "?")
        back = query_of(response)
        assert back["error"] == "consent_required" and back["state"] == "st4te" and back["iss"] == BASE
        assert "code" not in back
        assert await pending_transactions(oauth) == before  # no page, no transaction
    # Nor for a remembered approval whose (client, redirect URI) does not match exactly.
    elsewhere = authorize_params(other["client_id"], prompt="none", redirect_uri="http://127.0.0.1:4000/callback")
    response = await oauth.get("/authorize", params=elsewhere, headers=user_navigation(remembered))
    assert query_of(response)["error"] == "consent_required"


async def test_prompt_none_with_a_remembered_approval_goes_on_silently_for_the_same_user(oauth):
    client = await register(oauth)
    remembered = await remembered_approval(oauth, client["client_id"])
    params = authorize_params(client["client_id"], prompt="none")
    silent = await oauth.get("/authorize", params=params, headers=user_navigation(remembered))
    assert silent.status_code == 302 and silent.headers["location"].startswith("/login/dev")  # no consent screen
    login = await oauth.get(silent.headers["location"])
    done = await oauth.post("/login/dev", data={**form_fields(login.text), "username": "alice"})
    assert done.status_code == 303 and "code=" in done.headers["location"]
    assert query_of(done)["state"] == "st4te"


async def test_prompt_none_answers_consent_required_when_someone_else_signs_in(oauth):
    client = await register(oauth)
    remembered = await remembered_approval(oauth, client["client_id"], "alice")
    grants = await store_of(oauth).keys(keys.kind_prefix("grant"))
    params = authorize_params(client["client_id"], prompt="none")
    silent = await oauth.get("/authorize", params=params, headers=user_navigation(remembered))
    login = await oauth.get(silent.headers["location"])
    mallory = await oauth.post("/login/dev", data={**form_fields(login.text), "username": "mallory"})
    assert mallory.status_code == 303 and mallory.headers["location"].startswith(REDIRECT + "?")
    back = query_of(mallory)
    assert back["error"] == "consent_required" and back["state"] == "st4te" and back["iss"] == BASE
    assert "code" not in back
    assert await pending_transactions(oauth) == []  # no consent screen waiting either
    assert await store_of(oauth).keys(keys.kind_prefix("grant")) == grants  # and nothing granted to mallory


@pytest.mark.parametrize("prompt", ["consent", "login", "select_account", "login consent"])
async def test_interactive_prompts_show_the_consent_screen_even_when_remembered(oauth, prompt):
    client = await register(oauth)
    remembered = await remembered_approval(oauth, client["client_id"])
    params = authorize_params(client["client_id"], prompt=prompt)
    shown = await oauth.get("/authorize", params=params, headers=user_navigation(remembered))
    assert shown.status_code == 302 and shown.headers["location"].startswith("/consent?")
    # Without a prompt, the same browser skips it (the control).
    skipped = await oauth.get(
        "/authorize", params=authorize_params(client["client_id"]), headers=user_navigation(remembered)
    )
    assert skipped.headers["location"].startswith("/login/dev")


async def test_prompt_none_with_another_value_is_invalid_and_unknown_values_are_ignored(oauth):
    client = await register(oauth)
    contradiction = await oauth.get("/authorize", params=authorize_params(client["client_id"], prompt="none login"))
    back = query_of(contradiction)
    assert back["error"] == "invalid_request" and back["state"] == "st4te" and "code" not in back
    unknown = await oauth.get("/authorize", params=authorize_params(client["client_id"], prompt="create"))
    assert unknown.status_code == 302 and unknown.headers["location"].startswith("/consent?")


# --- request objects (RFC 9101) and pushed requests (RFC 9126) --------------------------------------------------


@pytest.mark.parametrize(
    "extra, error",
    [
        ({"request": "eyJhbGciOiJub25lIn0.eyJyZXNwb25zZV90eXBlIjoidG9rZW4ifQ."}, "request_not_supported"),
        ({"request": ""}, "request_not_supported"),
        ({"request_uri": "urn:ietf:params:oauth:request_uri:abc"}, "request_uri_not_supported"),
        ({"request_uri": "https://evil.example/request.jwt"}, "request_uri_not_supported"),
        ({"request": "x", "request_uri": "y"}, "request_not_supported"),
    ],
)
async def test_request_objects_are_refused_back_at_the_client(oauth, extra, error):
    client = await register(oauth)
    before = await pending_transactions(oauth)
    response = await oauth.get("/authorize", params={**authorize_params(client["client_id"]), **extra})
    assert response.status_code == 302 and response.headers["location"].startswith(REDIRECT + "?")
    back = query_of(response)
    assert back["error"] == error and back["state"] == "st4te" and back["iss"] == BASE and "code" not in back
    assert await pending_transactions(oauth) == before


async def test_request_objects_for_an_unknown_client_or_redirect_render_a_page(oauth):
    client = await register(oauth)
    await assert_page(oauth, {**authorize_params("no-such-client"), "request_uri": "urn:x"})
    evil = authorize_params(client["client_id"], redirect_uri="https://evil.example/cb")
    await assert_page(oauth, {**evil, "request": "x"})


async def test_metadata_says_what_is_not_supported(oauth):
    metadata = (await oauth.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["request_parameter_supported"] is False
    assert metadata["request_uri_parameter_supported"] is False
    assert "pushed_authorization_request_endpoint" not in metadata
    assert metadata["prompt_values_supported"] == ["none", "login", "consent", "select_account"]


# --- scopes: bounded input, bounded echo ----------------------------------------------------------------------


async def test_thousands_of_unknown_scopes_get_a_small_answer(oauth):
    client = await register(oauth)
    many = " ".join(f"unknown-scope-{i:05d}" for i in range(60))  # within the limits, all unknown
    response = await oauth.get("/authorize", params=authorize_params(client["client_id"], scope=many))
    back = query_of(response)
    assert back["error"] == "invalid_scope" and back["state"] == "st4te"
    assert back["error_description"].endswith(
        "unknown-scope-00000 unknown-scope-00001 unknown-scope-00002 (and 57 more)"
    )
    assert len(response.headers["location"]) < 500
    huge = " ".join(f"s{i}" for i in range(3000))  # ~17 KB of scope
    response = await oauth.get("/authorize", params=authorize_params(client["client_id"], scope=huge))
    back = query_of(response)
    assert back["error"] == "invalid_scope" and "too long" in back["error_description"]
    assert len(response.headers["location"]) < 500
    assert await pending_transactions(oauth) == []


@pytest.mark.parametrize(
    "scope",
    [
        "mcp " + "x" * 5000,  # one long unknown scope
        'mcp "quoted\\back',
        "mcp caf\u00e9 \u202egnp.evil",
        " ".join(["mcp"] * 65),  # more tokens than allowed, even if all valid
    ],
)
async def test_echoed_scopes_are_short_and_in_the_allowed_characters(oauth, scope):
    client = await register(oauth)
    response = await oauth.get("/authorize", params=authorize_params(client["client_id"], scope=scope))
    description = query_of(response)["error_description"]
    assert query_of(response)["error"] == "invalid_scope"
    assert len(description) < 200 and len(response.headers["location"]) < 600
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in description)


async def test_repeated_known_scopes_within_the_limit_are_fine(oauth):
    client = await register(oauth)
    response = await oauth.get("/authorize", params=authorize_params(client["client_id"], scope="mcp  mcp mcp"))
    assert response.status_code == 302 and response.headers["location"].startswith("/consent?")


# --- redirects answering a form POST are 303 See Other ---------------------------------------------------------


async def test_redirects_after_a_form_post_are_303_and_after_a_get_302(oauth):
    client = await register(oauth)
    start = await oauth.get("/authorize", params=authorize_params(client["client_id"]))
    assert start.status_code == 302  # a GET: 302 is fine
    approved = await consent(oauth, BASE + start.headers["location"])
    assert approved.status_code == 303 and approved.headers["location"].startswith("/login/dev?")
    login = await oauth.get(approved.headers["location"])
    done = await oauth.post("/login/dev", data={**form_fields(login.text), "username": "alice"})
    assert done.status_code == 303 and done.headers["location"].startswith(REDIRECT + "?")
    assert done.headers["cache-control"] == "no-store"

    start = await oauth.get("/authorize", params=authorize_params(client["client_id"]))
    denied = await consent(oauth, BASE + start.headers["location"], decision="deny")
    assert denied.status_code == 303 and query_of(denied)["error"] == "access_denied"

    # A remembered approval, and someone else signing in: back to the consent screen, also with a 303.
    remembered = await remembered_approval(oauth, client["client_id"], "alice")
    silent = await oauth.get(
        "/authorize", params=authorize_params(client["client_id"]), headers=user_navigation(remembered)
    )
    login = await oauth.get(silent.headers["location"])
    mallory = await oauth.post("/login/dev", data={**form_fields(login.text), "username": "mallory"})
    assert mallory.status_code == 303 and mallory.headers["location"].startswith("/consent?")


async def test_refused_posts_are_pages_not_redirects(oauth):
    refused = await oauth.post("/login/dev", data={"transaction": "forged", "username": "mallory"})
    assert refused.status_code == 400 and "location" not in refused.headers
    assert refused.headers["content-type"].startswith("text/html") and EXPIRED in refused.text
    refused = await oauth.post("/consent", data={"transaction": "forged", "csrf_token": "x", "decision": "approve"})
    assert refused.status_code == 403 and "location" not in refused.headers
    assert refused.headers["content-type"].startswith("text/html")
    assert "This consent form expired or did not come from this browser." in refused.text
    assert await records(oauth) == {}
