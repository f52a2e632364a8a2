"""A person in headless Chromium: the MCP SDK client starts authorization, the browser shows Bastion's consent
page, the person clicks Allow, signs in at the upstream provider and approves there, and the client calls a
tool that uses the upstream token."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from mcp.shared.auth import AuthorizationCodeResult
from playwright.async_api import Page, Route, async_playwright

from tests.browser import start_authorization

from .test_sdk_oauth import REDIRECT, MemoryStorage, call_tool_text, provider_for
from .test_upstream_sign_in import upstream_setup  # noqa: F401 - the provider and server this test signs in to

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


class ChromiumUser:
    def __init__(self, page: Page, login: str, screenshot: str) -> None:
        self.page = page
        self.login = login
        self.screenshot = screenshot
        self.landed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.result: AuthorizationCodeResult | None = None
        self.consent_text = ""

    async def catch_redirect(self, route: Route) -> None:
        # The application's own redirect URI: record where the browser was sent, show a closing page.
        if not self.landed.done():
            self.landed.set_result(route.request.url)
        await route.fulfill(status=200, content_type="text/html", body="<p>Signed in. You can close this.</p>")

    async def open(self, url: str) -> None:
        page = self.page
        await page.goto(url)
        allow = page.get_by_role("button", name="Allow")
        await allow.wait_for()
        self.consent_text = await page.inner_text("main")
        await page.screenshot(path=self.screenshot, full_page=True)
        await allow.click()
        await page.locator("input[name=login]").fill(self.login)  # the provider's own sign-in page
        await page.locator("input[name=password]").fill("correct horse")
        await page.locator("button[type=submit]").click()
        await page.locator("button[type=submit]").click()  # the provider's consent
        landed = await asyncio.wait_for(self.landed, 30)
        query = {k: v[0] for k, v in parse_qs(urlsplit(landed).query).items()}
        self.result = AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


async def test_a_person_signs_in_through_consent_and_the_provider(upstream_setup, tmp_path):  # noqa: F811
    url, _ = upstream_setup
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 900, "height": 760})
            user = ChromiumUser(page, "grace", str(tmp_path / "consent.png"))
            await page.route(f"{REDIRECT}**", user.catch_redirect)
            provider = provider_for(url, MemoryStorage(), user)
            assert await call_tool_text(url, provider, "upstream_profile") == "200 Grace"
            assert "SDK e2e" in user.consent_text and "Unverified application" in user.consent_text
            assert (tmp_path / "consent.png").stat().st_size > 10_000
            if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):  # scripts/screenshots refreshes the one in docs/
                shutil.copy(tmp_path / "consent.png", DOCS_IMAGES / "consent.png")
        finally:
            await browser.close()


async def test_the_consent_page_refuses_to_be_framed(upstream_setup):  # noqa: F811
    import httpx

    url, _ = upstream_setup
    base = url.removesuffix("/mcp")
    async with httpx.AsyncClient() as http:
        consent_url = await start_authorization(http, base, REDIRECT)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page()

            async def attacker(route: Route) -> None:  # a page on another origin that embeds the consent page
                await route.fulfill(
                    status=200,
                    content_type="text/html",
                    body=f'<iframe id="victim" src="{consent_url}" width="600" height="400"></iframe>',
                )

            await page.route("http://attacker.test/**", attacker)
            await page.goto("http://attacker.test/")
            await page.wait_for_timeout(1500)
            framed = [frame for frame in page.frames if frame != page.main_frame]
            assert framed, "the iframe was not created"
            # Chromium blocks the framed document (frame-ancestors 'none', X-Frame-Options DENY): no Allow button.
            assert await framed[0].locator("button").count() == 0
        finally:
            await browser.close()
