"""The connected applications page, the admin page and the admin API, in process: signed in through the dev
login (an account transaction, not a client's), with every refusal leaving the store as it was."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser import account_sign_in as sign_in
from tests.browser import cookie_header, set_cookies
from tests.clients import asgi_client, records
from tests.mcp.conftest import build_app, modern_body, modern_headers
from tests.oauth.conftest import register, settings, tokens_for
from tests.waiting import eventually

ADMIN = "dev:root"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def admin_settings():
    base = settings()
    return base.model_copy(update={"admin": base.admin.model_copy(update={"subjects": [ADMIN]})})


def csrf_of(page: httpx.Response) -> str:
    return CSRF.search(page.text).group(1)


async def call(client, token: str) -> int:
    answer = await client.post(
        "/mcp",
        headers={**modern_headers("tools/call", "add"), "authorization": f"Bearer {token}"},
        json=modern_body("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    return answer.status_code


async def test_a_person_sees_their_applications_and_revokes_one_whose_token_then_stops_working():
    async with asgi_client(build_app(), settings()) as client:
        notes = await register(client, client_name="Notes <script>alert(1)</script>")
        other = await register(client, client_name="Other app")
        mine = await tokens_for(client, notes, username="ada")
        theirs = await tokens_for(client, other, username="bob")
        browser = await sign_in(client, "ada")
        page = await client.get("/account", headers=browser)
        assert page.status_code == 200
        assert "Notes &lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
        assert "Other app" not in page.text and "Signed in as dev:ada" in page.text
        assert "Unverified" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        [grant_id] = re.findall(r'name="grant_id" value="([^"]*)"', page.text)

        revoked = await client.post(
            "/account/revoke", data={"grant_id": grant_id, "csrf_token": csrf_of(page)}, headers=browser
        )
        assert revoked.status_code == 303 and revoked.headers["location"] == "/account"
        assert await call(client, mine["access_token"]) == 401
        assert await call(client, theirs["access_token"]) == 200
        assert "Notes" not in (await client.get("/account", headers=browser)).text


async def test_forged_stale_or_cross_site_forms_change_nothing():
    async with asgi_client(build_app(), settings()) as client:
        ada = await tokens_for(client, await register(client), username="ada")
        bob_grant = (await tokens_for(client, await register(client), username="bob"))["access_token"].split(".")[0]
        browser = await sign_in(client, "ada")
        page = await client.get("/account", headers=browser)
        [ada_grant] = re.findall(r'name="grant_id" value="([^"]*)"', page.text)
        csrf = csrf_of(page)
        before = await records(client)
        attempts = [
            ({"grant_id": ada_grant}, browser),  # no token
            ({"grant_id": ada_grant, "csrf_token": "x" * 64}, browser),  # a wrong one
            ({"grant_id": ada_grant, "csrf_token": csrf}, {}),  # no session
            ({"grant_id": ada_grant, "csrf_token": csrf}, {**browser, "sec-fetch-site": "cross-site"}),
        ]
        for fields, headers in attempts:
            refused = await client.post("/account/revoke", data=fields, headers=headers)
            assert refused.status_code == 403, fields
        # Someone else's grant, with a good token: not found, and not revoked.
        other = await client.post("/account/revoke", data={"grant_id": bob_grant, "csrf_token": csrf}, headers=browser)
        assert other.status_code == 404
        assert await records(client) == before
        assert await call(client, ada["access_token"]) == 200


async def test_signing_out_ends_the_session_everywhere():
    async with asgi_client(build_app(), settings()) as client:
        browser = await sign_in(client, "ada")
        page = await client.get("/account", headers=browser)
        out = await client.post("/account/sign-out", data={"csrf_token": csrf_of(page)}, headers=browser)
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
        again = await client.get("/account", headers=browser)  # the old cookie, replayed
        assert "Continue with dev login" in again.text and "Signed in as" not in again.text


async def test_account_sign_in_accepts_only_known_methods_and_paths():
    async with asgi_client(build_app(), settings()) as client:
        before = await records(client)
        for fields in ({"method": "dev", "return_to": "https://evil.example/"}, {"method": "nope"}):
            refused = await client.post("/account/sign-in", data=fields)
            assert refused.status_code == 400
        assert await records(client) == before


async def test_the_admin_page_and_api_are_for_listed_subjects_only():
    async with asgi_client(build_app(), admin_settings()) as client:
        registered = await register(client, client_name="Tool runner")
        ada = await tokens_for(client, registered, username="ada")
        visitor = await sign_in(client, "ada", "/admin")
        page = await client.get("/admin", headers=visitor)
        assert page.status_code == 403 and "dev:ada is not an administrator" in page.text
        assert (await client.get("/admin/api/clients", headers=visitor)).json()["error"] == "forbidden"
        assert (await client.get("/admin/api/clients")).status_code == 401

        admin = await sign_in(client, "root", "/admin")
        page = await client.get("/admin", headers=admin)
        assert page.status_code == 200 and "Tool runner" in page.text and "dev:ada" in page.text

        async def shows_events() -> bool:  # the trail is written in the background, moments later
            return "client.registered" in (await client.get("/admin", headers=admin)).text

        await eventually(shows_events, "the admin page showing the newest audit events")
        listed = (await client.get("/admin/api/grants", params={"user": "dev:ada"}, headers=admin)).json()
        [grant] = listed["grants"]
        assert grant["client_id"] == registered["client_id"] and "props" not in grant

        before = await records(client)
        no_csrf = await client.delete(f"/admin/api/grants/{grant['grant_id']}", headers=admin)
        assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf"
        assert await records(client) == before
        csrf = (await client.get("/admin/api/session", headers=admin)).json()["csrf_token"]
        done = await client.delete(f"/admin/api/grants/{grant['grant_id']}", headers={**admin, "x-csrf-token": csrf})
        assert done.json() == {"revoked": grant["grant_id"]}
        assert await call(client, ada["access_token"]) == 401
        assert (await client.get(f"/admin/api/grants/{grant['grant_id']}", headers=admin)).status_code == 404

        second = await tokens_for(client, registered, username="bob")
        kept = await client.delete(
            f"/admin/api/clients/{registered['client_id']}/grants", headers={**admin, "x-csrf-token": csrf}
        )
        assert kept.json() == {"client_id": registered["client_id"], "grants_revoked": 1}
        assert await call(client, second["access_token"]) == 401
        assert (await client.get(f"/admin/api/clients/{registered['client_id']}", headers=admin)).json()["grants"] == 0
        deleted = await client.delete(
            f"/admin/api/clients/{registered['client_id']}", headers={**admin, "x-csrf-token": csrf}
        )
        assert deleted.json() == {"deleted": registered["client_id"], "grants_revoked": 0}

        async def admin_events() -> list:
            query = {"limit": "3", "type": "admin."}
            events = (await client.get("/admin/api/audit", params=query, headers=admin)).json()["events"]
            return [(e["type"], e["details"]["by"]) for e in events]

        wanted = [
            ("admin.grant.revoked", f"admin:{ADMIN}"),
            ("admin.client.revoked", f"admin:{ADMIN}"),
            ("admin.client.deleted", f"admin:{ADMIN}"),
        ]

        async def both_recorded() -> bool:
            return await admin_events() == wanted

        await eventually(both_recorded, "both admin actions in the audit trail")
        for bad in ({"limit": "999999"}, {"limit": "-1"}, {"since": "yesterday"}):
            refused = await client.get("/admin/api/audit", params=bad, headers=admin)
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
        later = await client.get("/admin/api/audit", params={"since": "4102444800"}, headers=admin)  # 2100
        assert later.json() == {"events": []}


def test_admin_subjects_must_be_subjects():
    from tests.clients import local_settings

    with pytest.raises(Exception, match="is not a subject"):
        local_settings(admin={"subjects": ["root"]})


async def test_revoking_on_the_account_page_forgets_this_browsers_approval_so_the_app_must_ask_again():
    from tests.oauth.conftest import authorize_params
    from tests.oauth.test_consent import approve_and_sign_in

    async with asgi_client(build_app(), settings()) as client:
        app = await register(client)
        remembered = await approve_and_sign_in(client, app["client_id"], username="ada")
        user_navigation = {**cookie_header(remembered), "sec-fetch-site": "none"}
        silent = await client.get("/authorize", params=authorize_params(app["client_id"]), headers=user_navigation)
        assert silent.headers["location"].startswith("/login/dev")  # remembered: no consent screen

        browser = await sign_in(client, "ada")
        both = {"cookie": f"{browser['cookie']}; {cookie_header(remembered)['cookie']}"}
        page = await client.get("/account", headers=both)
        [grant_id] = re.findall(r'name="grant_id" value="([^"]*)"', page.text)
        revoked = await client.post(
            "/account/revoke", data={"grant_id": grant_id, "csrf_token": csrf_of(page)}, headers=both
        )
        assert revoked.status_code == 303
        forgotten = set_cookies(revoked)["__Host-bastion-approvals"]
        after = {**cookie_header({"__Host-bastion-approvals": forgotten}), "sec-fetch-site": "none"}
        asked = await client.get("/authorize", params=authorize_params(app["client_id"]), headers=after)
        assert asked.headers["location"].startswith("/consent")


async def test_the_admin_pages_forms_act_once_and_only_for_admins():
    async with asgi_client(build_app(), admin_settings()) as client:
        registered = await register(client, client_name="Form target")
        ada = await tokens_for(client, registered, username="ada")
        admin = await sign_in(client, "root", "/admin")
        csrf = csrf_of(await client.get("/admin", headers=admin))
        visitor = await sign_in(client, "ada", "/admin")
        visitor_csrf = csrf_of(await client.get("/account", headers=visitor))
        form = {"client_id": registered["client_id"]}

        before = await records(client)
        refused = await client.post("/admin/clients/revoke", data={**form, "csrf_token": visitor_csrf}, headers=visitor)
        assert refused.status_code == 403 and "not an administrator" in refused.text
        assert (await client.post("/admin/clients/revoke", data=form, headers=admin)).status_code == 403  # no token
        assert await records(client) == before

        kept = await client.post("/admin/clients/revoke", data={**form, "csrf_token": csrf}, headers=admin)
        assert kept.status_code == 303 and kept.headers["location"] == "/admin"
        assert await call(client, ada["access_token"]) == 401
        deleted = await client.post("/admin/clients/delete", data={**form, "csrf_token": csrf}, headers=admin)
        assert deleted.status_code == 303  # with no grant left to revoke: still done
        again = await client.post("/admin/clients/delete", data={**form, "csrf_token": csrf}, headers=admin)
        assert again.status_code == 404 and "No such client" in again.text
        gone = await client.post("/admin/grants/revoke", data={"grant_id": "nope", "csrf_token": csrf}, headers=admin)
        assert gone.status_code == 404 and "No such grant" in gone.text
