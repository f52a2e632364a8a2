"""The consent screen under attack: CSRF, framing, script injection, replay, and remembered approvals."""

import httpx
import pytest

from bastion.store import Commit, keys
from tests.browser import consent, cookie_header, form_fields, set_cookies
from tests.clients import records, store_of
from tests.waiting import eventually

from .conftest import BASE, REDIRECT, authorize_params, query_of, register

FORM_REFUSED = "This consent form expired or did not come from this browser."
CROSS_SITE = "This form can only be submitted from this site."


def refused_page(response: httpx.Response, message: str) -> None:
    assert response.status_code == 403 and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html") and message in response.text


async def consent_page(oauth, client_id: str, **params) -> tuple[httpx.Response, str]:
    start = await oauth.get("/authorize", params=authorize_params(client_id, **params))
    assert start.status_code == 302 and start.headers["location"].startswith("/consent?")
    return await oauth.get(start.headers["location"]), start.headers["location"]


async def post(oauth, fields: dict, cookies: dict, **headers) -> httpx.Response:
    return await oauth.post("/consent", data=fields, headers={**cookie_header(cookies), **headers})


async def test_the_page_shows_the_client_and_is_locked_down(oauth):
    client = await register(oauth, client_name="Notes <b>Pro</b>")
    page, _ = await consent_page(oauth, client["client_id"])
    assert "Notes &lt;b&gt;Pro&lt;/b&gt;" in page.text and "<b>Pro" not in page.text
    assert "Unverified application" in page.text and "127.0.0.1:3000" in page.text and ">mcp<" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    # The form may lead only here and to the application's redirect URI (browsers check redirects too).
    assert "form-action 'self' http://127.0.0.1:3000;" in csp
    assert "script-src" not in csp and "<script" not in page.text
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    [cookie] = page.headers.get_list("set-cookie")
    assert cookie.startswith("__Host-bastion-csrf-")
    for attribute in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
        assert attribute in cookie
    assert "Domain" not in cookie


async def test_script_in_names_and_non_https_logos_never_render(oauth):
    client = await register(oauth, client_name='"><script>alert(1)</script>')
    store = store_of(oauth)
    key = keys.client(client["client_id"])
    record = await store.get(key)
    record["logo_uri"] = "javascript:alert(1)"  # as if it had slipped past registration
    await store.commit(Commit().set(key, record, 3600))
    page, _ = await consent_page(oauth, client["client_id"])
    assert "<script>alert(1)" not in page.text and "javascript:" not in page.text
    assert "&lt;script&gt;" in page.text


@pytest.mark.parametrize("tamper", ["no_token", "wrong_token", "no_cookie", "cookie_only_mismatch"])
async def test_csrf_failures_are_refused_and_change_nothing(oauth, tamper):
    client = await register(oauth)
    page, location = await consent_page(oauth, client["client_id"])
    fields, cookies = {**form_fields(page.text), "decision": "approve"}, set_cookies(page)
    name = next(iter(cookies))
    if tamper == "no_token":
        fields.pop("csrf_token")
    elif tamper == "wrong_token":
        fields["csrf_token"] = "x" * 43
    elif tamper == "no_cookie":
        cookies = {}
    else:
        cookies = {name: "y" * 43}
    before = await records(oauth)
    refused_page(await post(oauth, fields, cookies), FORM_REFUSED)
    assert await records(oauth) == before
    # Nothing changed: the real form still works.
    approved = await consent(oauth, BASE + location)
    assert approved.status_code == 303 and approved.headers["location"].startswith("/login/dev")


async def test_a_token_works_once(oauth):
    client = await register(oauth)
    page, _ = await consent_page(oauth, client["client_id"])
    fields, cookies = {**form_fields(page.text), "decision": "approve"}, set_cookies(page)
    assert (await post(oauth, fields, cookies)).status_code == 303
    before = await records(oauth)
    refused_page(await post(oauth, fields, cookies), FORM_REFUSED)
    assert await records(oauth) == before


async def test_cross_site_posts_are_refused(oauth):
    client = await register(oauth)
    page, _ = await consent_page(oauth, client["client_id"])
    fields, cookies = {**form_fields(page.text), "decision": "approve"}, set_cookies(page)
    before = await records(oauth)
    refused_page(await post(oauth, fields, cookies, **{"sec-fetch-site": "cross-site"}), CROSS_SITE)
    refused_page(await post(oauth, fields, cookies, **{"sec-fetch-site": "same-site"}), CROSS_SITE)
    assert await records(oauth) == before  # the transaction is not used up
    assert (await post(oauth, fields, cookies, **{"sec-fetch-site": "same-origin"})).status_code == 303


async def test_a_second_get_does_not_break_the_first_page(oauth):
    client = await register(oauth)
    first, location = await consent_page(oauth, client["client_id"])
    second = await oauth.get(location)  # a prefetch, without the cookie the first GET set
    assert second.status_code == 200 and form_fields(second.text)["csrf_token"] != form_fields(first.text)["csrf_token"]
    third = await oauth.get(location, headers=cookie_header(set_cookies(first)))  # with it: the same token again
    assert form_fields(third.text)["csrf_token"] == form_fields(first.text)["csrf_token"]
    approved = await post(oauth, {**form_fields(first.text), "decision": "approve"}, set_cookies(first))
    assert approved.status_code == 303


async def test_deny_goes_back_with_access_denied(oauth):
    client = await register(oauth)
    _, location = await consent_page(oauth, client["client_id"])
    denied = await consent(oauth, BASE + location, decision="deny")
    back = query_of(denied)
    assert denied.headers["location"].startswith(REDIRECT)
    assert back["error"] == "access_denied" and back["state"] == "st4te" and back["iss"] == BASE and "code" not in back

    async def recorded() -> bool:
        events = await records(oauth, keys.audit_events("main"))
        return any(e["type"] == "consent.denied" for e in events.values())

    await eventually(recorded, "the denial in the audit trail")
    events = [e for e in (await records(oauth, keys.audit_events("main"))).values() if e["type"].startswith("consent")]
    *shown, last = [(e["type"], e["outcome"], e["client_id"]) for e in events]
    assert shown and set(shown) == {("consent.shown", "success", client["client_id"])}  # each time it was shown
    assert last == ("consent.denied", "failure", client["client_id"])
    assert events[-1]["request_id"] == denied.headers["x-request-id"]


async def approve_and_sign_in(oauth, client_id: str, username: str = "alice", **params) -> dict[str, str]:
    """Run the whole flow; returns the cookies the browser holds afterwards (the remembered approval)."""
    page, _ = await consent_page(oauth, client_id, **params)
    approved = await post(oauth, {**form_fields(page.text), "decision": "approve"}, set_cookies(page))
    login = await oauth.get(approved.headers["location"])
    done = await oauth.post("/login/dev", data={**form_fields(login.text), "username": username})
    assert done.status_code == 303 and "code=" in done.headers["location"]
    return {k: v for k, v in set_cookies(done).items() if "approvals" in k}


async def test_remembered_approvals_skip_consent_only_for_the_same_client_redirect_and_user(oauth):
    client, other = await register(oauth), await register(oauth)
    remembered = await approve_and_sign_in(oauth, client["client_id"])
    assert list(remembered) == ["__Host-bastion-approvals"]
    user_navigation = {**cookie_header(remembered), "sec-fetch-site": "none"}

    silent = await oauth.get("/authorize", params=authorize_params(client["client_id"]), headers=user_navigation)
    assert silent.headers["location"].startswith("/login/dev")
    # ... and the same user signing in completes without consent.
    login = await oauth.get(silent.headers["location"])
    done = await oauth.post("/login/dev", data={**form_fields(login.text), "username": "alice"})
    assert "code=" in done.headers["location"]

    for params, headers in [
        (authorize_params(other["client_id"]), user_navigation),  # another client
        (authorize_params(client["client_id"], redirect_uri="http://127.0.0.1:4000/callback"), user_navigation),
        (authorize_params(client["client_id"]), {**cookie_header(remembered), "sec-fetch-site": "cross-site"}),
        (authorize_params(client["client_id"]), cookie_header(remembered)),  # no Sec-Fetch-Site at all
    ]:
        shown = await oauth.get("/authorize", params=params, headers=headers)
        assert shown.headers["location"].startswith("/consent"), params


async def test_a_remembered_approval_is_not_another_users(oauth):
    client = await register(oauth)
    remembered = await approve_and_sign_in(oauth, client["client_id"], username="alice")
    codes, grants = await records(oauth, "code:"), await records(oauth, "grant:")
    assert codes and grants  # alice's
    silent = await oauth.get(
        "/authorize",
        params=authorize_params(client["client_id"]),
        headers={**cookie_header(remembered), "sec-fetch-site": "none"},
    )
    login = await oauth.get(silent.headers["location"])
    mallory = await oauth.post("/login/dev", data={**form_fields(login.text), "username": "mallory"})
    assert mallory.status_code == 303 and mallory.headers["location"].startswith("/consent?")
    assert "code=" not in mallory.headers["location"]
    assert await records(oauth, "code:") == codes and await records(oauth, "grant:") == grants  # none for mallory


@pytest.mark.parametrize("tamper", ["flip", "truncate", "garbage", "huge"])
async def test_tampered_approval_cookies_are_ignored(oauth, tamper):
    client = await register(oauth)
    remembered = await approve_and_sign_in(oauth, client["client_id"])
    name, value = next(iter(remembered.items()))
    value = {
        "flip": value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
        "truncate": value[: len(value) // 2],
        "garbage": "not-a-cookie",
        "huge": "x" * 5000,
    }[tamper]
    shown = await oauth.get(
        "/authorize",
        params=authorize_params(client["client_id"]),
        headers={"cookie": f"{name}={value}", "sec-fetch-site": "none"},
    )
    assert shown.status_code == 302 and shown.headers["location"].startswith("/consent")
