"""People in headless Chromium against `bastion serve`: a user signs in to the connected applications page,
sees the application they authorized and revokes it (its token stops working at once); an administrator signs
in to the admin page and deletes a client; someone not listed as an admin is turned away. Each page is served
under the consent page's CSP (no script at all) and every action is a CSRF-protected form post."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from tests.oauth.conftest import REDIRECT

from .calls import pid_call
from .conftest import bastion_server
from .test_browser_sign_in import CHROMIUM, DOCS_IMAGES, FLAGS
from .test_workers import SERVER, grant, sqlite_env

pytestmark = pytest.mark.e2e


async def sign_in(page: Page, url: str, name: str) -> None:
    await page.goto(url)
    await page.get_by_role("button", name="Continue with dev login").click()
    await page.locator("input[name=username]").fill(name)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_user_revokes_an_application_and_an_admin_deletes_a_client(tmp_path):
    env = sqlite_env(tmp_path, BASTION_ADMIN__SUBJECTS="dev:root", BASTION_JSON_RESPONSE="true")
    with bastion_server(SERVER, env=env) as url:
        base = url.removesuffix("/mcp")
        async with httpx.AsyncClient(timeout=30) as http:
            apps = []
            for name in ("Browser test app", "Second app"):
                body = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": name}
                apps.append((await http.post(f"{base}/register", json=body)).json()["client_id"])
            tokens = await grant(base, apps[0])  # signed in as dev:revoked-user
            assert (await http.post(url, **pid_call(tokens["access_token"], "browser"))).status_code == 200

            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                try:
                    user = await (await browser.new_context()).new_page()
                    await sign_in(user, f"{base}/account", "revoked-user")
                    await user.get_by_text("Browser test app").wait_for()
                    shown = await user.inner_text("main")
                    assert "Signed in as dev:revoked-user" in shown and "Unverified" in shown
                    assert "Second app" not in shown
                    policy = (await user.request.get(f"{base}/account")).headers["content-security-policy"]
                    assert "default-src 'none'" in policy and "script-src" not in policy
                    await user.get_by_role("button", name="Revoke").click()
                    await user.get_by_text("No application can use").wait_for()
                    answer = await http.post(url, **pid_call(tokens["access_token"], "browser"))
                    assert answer.status_code == 401  # the revoked grant's token, refused at once

                    visitor = await (await browser.new_context()).new_page()
                    await sign_in(visitor, f"{base}/admin", "mallory")
                    await visitor.get_by_text("is not an administrator").wait_for()
                    assert "Second app" not in await visitor.inner_text("main")

                    admin = await (await browser.new_context()).new_page()
                    await sign_in(admin, f"{base}/admin", "root")
                    await admin.get_by_text("Second app").wait_for()
                    row = admin.locator("tr", has_text="Second app")
                    await row.get_by_role("button", name="Delete").click()
                    await admin.get_by_text("Clients (1)").wait_for()
                    assert "Second app" not in await admin.inner_text("main")
                    await admin.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
                    assert (tmp_path / "admin.png").stat().st_size > 10_000
                    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):  # scripts/screenshots refreshes docs/images
                        shutil.copy(tmp_path / "admin.png", DOCS_IMAGES / "admin.png")
                finally:
                    await browser.close()
            listed = await http.post(f"{base}/register", json={"redirect_uris": []})
            assert listed.status_code == 400  # still serving; nothing else broke
