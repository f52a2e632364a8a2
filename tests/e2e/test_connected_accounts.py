"""Connected accounts end to end: `bastion serve` with three [[connections]] (local stand-ins speaking Slack's and
GitHub's OAuth, and a real OAuth provider process, npm oidc-provider, found by discovery), the official SDK client
in each protocol era, and people in headless Chromium who walk the links the tools' URL elicitations carry.

The first call of a tool is answered with the link (the -32042 error on a 2025-11-25 session, input_required on
2026-07-28); the person opens it in a browser that has never seen Bastion, signs in, continues to the provider and
approves; the client retries and the call succeeds. Another tool for the same account needs no new consent, a
wider scope asks again, and a link opened by someone else is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import mcp_types
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from playwright.async_api import Page, async_playwright

from mcp import Client
from tests.github_mock import github_server
from tests.slack_mock import slack_entry, slack_server
from tests.upstream_oidc import start_oidc_provider

from .conftest import bastion_server, free_port
from .test_browser_sign_in import CHROMIUM, FLAGS
from .test_sdk_oauth import HeadlessBrowser, MemoryStorage, provider_for

pytestmark = pytest.mark.e2e
SERVER = Path(__file__).resolve().parent / "servers" / "connected.py"
SECRETS = {"SLACK_SECRET": "slack-secret", "GITHUB_SECRET": "github-secret", "DOCS_SECRET": "docs-secret-" + "y" * 20}
STATE_SECRET = "e2e-Connected-Accounts-State-Secret-9f3K2"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Bastion with Slack, GitHub and the company's provider as connections; yields its URL and the stand-ins."""
    directory = tmp_path_factory.mktemp("connected")
    port = free_port()
    callback = f"http://127.0.0.1:{port}/connections/callback"
    with (
        slack_server(SECRETS["SLACK_SECRET"]) as (slack, slack_base),
        github_server("gh-app", SECRETS["GITHUB_SECRET"], f"{callback}/github") as (github, github_base),
        start_oidc_provider("bastion-docs", SECRETS["DOCS_SECRET"], f"{callback}/docs") as issuer,
    ):
        slack_toml = "".join(f'{k} = "{v}"\n' for k, v in slack_entry(slack_base, "SLACK_SECRET").items())
        config = directory / "bastion.toml"
        config.write_text(
            f'state_secret = "{STATE_SECRET}"\n'
            "[authorization_server]\nenabled = true\ndev_login = true\n"
            f'[store]\npath = "{directory / "bastion.db"}"\n'
            f"[[connections]]\n{slack_toml}"
            '[[connections]]\nname = "github"\npreset = "github"\nclient_id = "gh-app"\n'
            'client_secret_env = "GITHUB_SECRET"\n'
            f'authorization_endpoint = "{github_base}/login/oauth/authorize"\n'
            f'token_endpoint = "{github_base}/login/oauth/access_token"\n'
            f'revocation_endpoint = "{github_base}/api/applications/{{client_id}}/grant"\n'
            f'userinfo_endpoint = "{github_base}/api/user"\n'
            '[[connections]]\nname = "docs"\npreset = "oauth2"\nlabel = "Company Docs"\n'
            f'issuer = "{issuer}"\nclient_id = "bastion-docs"\nclient_secret_env = "DOCS_SECRET"\n'
        )
        env = {**SECRETS, "SLACK_BASE": slack_base, "GITHUB_BASE": github_base, "DOCS_ISSUER": issuer}
        log = directory / "bastion.log"
        with bastion_server(SERVER, "--config", str(config), env=env, port=port, log=log) as url:
            yield {"url": url, "slack": slack, "github": github, "log": log, "config": config, "env": env}


class Person:
    """Someone at a browser that starts knowing nothing of Bastion: signs in when asked, approves at providers."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name
        self.opened: list[str] = []

    async def open_link(self, url: str) -> str:
        """Open a connect link; sign in to Bastion if asked. The text of the page it shows."""
        self.opened.append(url)
        page = self.page
        await page.goto(url)
        sign_in = page.get_by_role("button", name="Continue with dev login")
        if await sign_in.count():
            await sign_in.click()
            await page.locator("input[name=username]").fill(self.name)
            await page.get_by_role("button", name="Sign in").click()
        await page.locator("main").wait_for()
        return await page.inner_text("main")

    async def connect(self, url: str) -> str:
        """Open the link and go all the way: the provider's pages, then back; the page Bastion ends on."""
        shown = await self.open_link(url)
        assert "Connect your" in shown, shown
        await self.page.get_by_role("button", name="Continue to").click()
        await self.approve_at_provider()
        await self.page.get_by_text("You can close this window").wait_for()
        return shown

    async def approve_at_provider(self) -> None:
        page = self.page
        await page.wait_for_load_state()
        if await page.locator("input[name=password]").count():  # oidc-provider's sign-in, then its consent
            await page.locator("input[name=login]").fill(self.name)
            await page.locator("input[name=password]").fill("correct horse")
            await page.locator("button[type=submit]").click()
            await page.locator("button[type=submit]").click()
        elif await page.get_by_role("button", name="Authorize").count():  # the GitHub stand-in
            await page.locator("input[name=login]").fill(self.name)
            await page.get_by_role("button", name="Authorize").click()
        else:  # the Slack stand-in
            await page.get_by_role("button", name="Allow").click()


def client_for(url: str, mode: str, user: str, person: Person) -> tuple[Any, Client]:
    """The SDK client signed in to Bastion as `user`; in 2026-07-28 its elicitation callback sends `person` to
    the link and answers accept once they are back."""

    async def on_elicit(context: Any, params: Any) -> Any:
        assert params.mode == "url"
        await person.connect(params.url)
        return mcp_types.ElicitResult(action="accept")

    http = httpx2.AsyncClient(auth=provider_for(url, MemoryStorage(), HeadlessBrowser(user)), timeout=60)
    return http, Client(streamable_http_client(url, http_client=http), mode=mode, elicitation_callback=on_elicit)


def text(result: Any) -> str:
    return " ".join(part.text for part in result.content)


async def legacy_call(client: Client, person: Person, tool: str, arguments: dict | None = None) -> str:
    """A 2025-11-25 call: the URL-elicitation-required error, the person at the link, then the retry."""
    try:
        return text(await client.call_tool(tool, arguments or {}))
    except MCPError as exc:
        assert exc.error.code == -32042, exc.error
        [elicitation] = exc.error.data["elicitations"]
        assert elicitation["mode"] == "url" and elicitation["elicitationId"]
        await person.connect(elicitation["url"])
    return text(await client.call_tool(tool, arguments or {}))


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_tools_connect_accounts_through_url_elicitation(deployment, mode):
    url = deployment["url"]
    user = "ada" if mode == "legacy" else "grace"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            person = Person(await (await browser.new_context()).new_page(), user)
            http, client = client_for(url, mode, user, person)
            async with http, client:

                async def call(tool: str, arguments: dict | None = None) -> str:
                    if mode == "legacy":
                        return await legacy_call(client, person, tool, arguments)
                    return text(await client.call_tool(tool, arguments or {}))

                slack_user = "U0ADA"
                assert await call("post_message", {"text": "hello"}) == f"posted 'hello' as {slack_user}"
                assert len(person.opened) == 1
                assert await call("slack_whoami") == slack_user
                assert len(person.opened) == 1  # the same account: no new consent
                assert await call("upload_file") == f"uploaded as {slack_user}"
                assert len(person.opened) == 2  # a wider scope asked again
                assert await call("github_login") == user
                assert await call("docs_profile") == f"200 {user.title()}"
                assert len(person.opened) == 4

                account = await person.open_link(url.removesuffix("/mcp") + "/account")
                for shown in ("Slack", "GitHub", "Company Docs", "U0ADA in Acme", user):
                    assert shown in account
        finally:
            await browser.close()
    log = deployment["log"].read_text()
    for token in [*deployment["slack"].tokens, *deployment["github"].tokens]:
        assert token not in log  # no connected account's token in the server's log


async def test_a_link_opened_by_someone_else_is_refused(deployment):
    url = deployment["url"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            victim = Person(await (await browser.new_context()).new_page(), "victim")
            attacker = Person(await (await browser.new_context()).new_page(), "attacker")
            http, client = client_for(url, "legacy", "attacker", attacker)
            async with http, client:
                with pytest.raises(MCPError) as raised:
                    await client.call_tool("github_login", {})
                link = raised.value.error.data["elicitations"][0]["url"]
                # The attacker forwards their link: the victim, signed in as themselves, is refused.
                shown = await victim.open_link(link)
                assert "made for another account" in shown and "Continue to" not in shown
                assert deployment["github"].tokens == {} or all(
                    login != "victim" for login in deployment["github"].tokens.values()
                )
                # The attacker's own browser still may.
                await attacker.connect(link)
                assert text(await client.call_tool("github_login", {})) == "attacker"
        finally:
            await browser.close()


def test_an_operator_lists_and_disconnects_accounts_with_bastion_admin(deployment):
    env, config = deployment["env"], str(deployment["config"])

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bastion.cli", "admin", "--config", config, *args]
        return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)

    connected = admin("--json", "connections", "list")
    assert connected.returncode == 0, connected.stderr
    rows = [json.loads(line) for line in connected.stdout.splitlines()]
    assert {(row["subject"], row["connection"]) for row in rows} >= {("dev:ada", "slack"), ("dev:grace", "github")}
    for token in [*deployment["slack"].tokens, *deployment["github"].tokens]:
        assert token not in connected.stdout
    github = deployment["github"]
    token = next(t for t, login in github.tokens.items() if login == "ada")
    done = admin("connections", "disconnect", "dev:ada", "github")
    assert done.returncode == 0 and "revoked at the provider" in done.stdout, done.stderr
    assert token in github.revoked
    again = admin("connections", "disconnect", "dev:ada", "github")
    assert again.returncode == 2 and again.stderr.startswith("bastion: dev:ada has no 'github' account")
    table = admin("connections", "list", "--user", "dev:ada")
    assert "slack" in table.stdout and "github" not in table.stdout
