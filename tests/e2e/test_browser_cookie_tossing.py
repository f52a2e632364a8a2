"""Cookie tossing in headless Chromium: a plain-http page on another port of the same host plants a look-alike of
Bastion's upstream-state cookie (its name behind a raw 0xA0 byte), then sends the victim to the provider with
the attacker's own captured sign-in link. The victim signs in at the provider; Bastion's callback must refuse,
so the attacker's authorization is never completed as the victim."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Route, async_playwright

from tests.browser import consent, cookie_header, set_cookies, start_authorization
from tests.local_server import free_port, serve_in_thread

from .test_browser_sign_in import CHROMIUM, FLAGS
from .test_sdk_oauth import REDIRECT
from .test_upstream_sign_in import upstream_setup  # noqa: F401 - the provider and server this test signs in to

pytestmark = pytest.mark.e2e
TOSSED = b"\xa0"  # Starlette's cookie parser (str.strip) drops it; browsers keep it as part of the name


class Attacker:
    """A plain-http site on 127.0.0.1 (another port than Bastion's: cookies do not isolate ports)."""

    def __init__(self, name: str, value: str, then: str) -> None:
        self.cookie = TOSSED + name.encode() + b"=" + value.encode() + b"; Path=/"
        self.then = then
        self.seen: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        cookies = b"; ".join(value for key, value in scope["headers"] if key == b"cookie")
        self.seen.append(cookies)
        headers = [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")]
        if scope["path"] == "/plant":  # the attacker's link: plant the look-alike, go on to the provider
            headers += [(b"set-cookie", self.cookie), (b"location", self.then.encode())]
            await send({"type": "http.response.start", "status": 302, "headers": headers})
        else:  # what this browser sends to 127.0.0.1
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_a_tossed_lookalike_state_cookie_does_not_complete_the_attackers_sign_in(upstream_setup):  # noqa: F811
    url, _ = upstream_setup
    base = url.removesuffix("/mcp")
    # The attacker starts a sign-in with their own client in their own browser, and stops at the provider link.
    async with httpx.AsyncClient(timeout=10) as attacker_browser:
        to_provider = await consent(attacker_browser, await start_authorization(attacker_browser, base, REDIRECT))
    provider_link = to_provider.headers["location"]
    state = parse_qs(urlsplit(provider_link).query)["state"][0]
    [(name, binding)] = [(k, v) for k, v in set_cookies(to_provider).items() if k.endswith("-state")]

    attacker = Attacker(name, binding, provider_link)
    landed: list[str] = []

    async def application(route: Route) -> None:  # the attacker's client's redirect URI
        landed.append(route.request.url)
        await route.fulfill(status=200, content_type="text/html", body="<p>code received</p>")

    with serve_in_thread(attacker, free_port()) as attacker_site:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = await browser.new_page()
                await page.route(f"{REDIRECT}**", application)
                callbacks: list[str] = []
                page.on("request", lambda r: callbacks.append(r.url) if r.url.startswith(f"{base}/callback/") else None)
                await page.goto(f"{attacker_site}/plant")  # the victim opens the attacker's link
                await page.locator("input[name=login]").fill("grace")  # the provider's own sign-in page
                await page.locator("input[name=password]").fill("correct horse")
                await page.locator("button[type=submit]").click()
                await page.locator("button[type=submit]").click()  # the provider's consent
                # Back at Bastion's callback: either its refusal page, or (were the look-alike honoured) the
                # attacker's client with a code for the victim's account.
                await page.wait_for_url(lambda at: at.startswith((f"{base}/callback/", REDIRECT)))
                text = await page.inner_text("body")
                # The browser really carries the look-alike to this host (any port).
                await page.goto(f"{attacker_site}/echo")
            finally:
                await browser.close()

    assert landed == []  # no code ever reached the attacker's client
    assert "started in another browser" in text
    [callback] = callbacks
    assert f"state={state}" in callback and "code=" in callback
    assert any(TOSSED + name.encode() + b"=" + binding.encode() in seen for seen in attacker.seen[-1:])
    # The refused callback used nothing up: the same callback with the genuine cookie still completes.
    async with httpx.AsyncClient(timeout=10) as check:
        genuine = await check.get(callback, headers=cookie_header({name: binding}))
    assert genuine.status_code == 302 and genuine.headers["location"].startswith(REDIRECT + "?code=")
