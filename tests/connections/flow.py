"""Connected-account flows played in process: the app, its settings, a person's browser, MCP calls in each era."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx

from bastion import App, Context
from tests.browser import account_sign_in, cookie_header, set_cookies
from tests.clients import local_settings
from tests.mcp.conftest import MODERN, modern_headers
from tests.messages import initialize
from tests.oauth.conftest import register, tokens_for
from tests.slack_mock import slack_entry

SECRET_ENV = "BASTION_TEST_CONNECTION_SECRET"
STATE_SECRET = "Qz7-kP2vX9mW4tR8nB1cL6yH3jF0sD5gA_eU"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
URL_CAPABLE = {"elicitation": {"form": {}, "url": {}}}


def app_for(slack_base: str) -> App:
    app = App("connected")

    async def who(token: str) -> str:
        async with httpx.AsyncClient() as http:
            answer = (
                await http.post(f"{slack_base}/api/auth.test", headers={"Authorization": f"Bearer {token}"})
            ).json()
        assert answer["ok"], answer
        return str(answer["user_id"])

    @app.tool(requires_upstream="slack", upstream_scopes=["chat:write"])
    async def post_message(text: str, ctx: Context) -> str:
        """Post to Slack as the user."""
        return f"posted {text!r} as {await who(await ctx.upstream_token('slack', ['chat:write']))}"

    @app.tool(requires_upstream="slack")
    async def whoami(ctx: Context) -> str:
        """Who the user is at Slack."""
        return await who(await ctx.upstream_token("slack"))

    @app.tool(requires_upstream="slack", upstream_scopes=["chat:write", "files:write"])
    async def upload(ctx: Context) -> str:
        """Needs a wider grant."""
        return f"uploaded as {await who(await ctx.upstream_token('slack', ['chat:write', 'files:write']))}"

    @app.tool
    async def later(ctx: Context) -> str:
        """Asks for the account only once it runs (no declaration)."""
        return f"later as {await who(await ctx.upstream_token('slack', ['chat:write']))}"

    return app


def connected_settings(slack_base: str):
    return local_settings(
        store={"backend": "memory"},
        authorization_server={"enabled": True, "dev_login": True},
        connections=[slack_entry(slack_base, SECRET_ENV)],
        state_secret=STATE_SECRET,
    )


async def has_at_least(found, count: int) -> bool:
    return len(await found) >= count


class Person:
    """A browser: the cookies one person's visits leave, sent back on the next."""

    def __init__(self, client: httpx.AsyncClient, cookies: dict[str, str]) -> None:
        self.client = client
        self.cookies = dict(cookies)

    @property
    def headers(self) -> dict[str, str]:
        return cookie_header(self.cookies)

    async def get(self, url: str) -> httpx.Response:
        answer = await self.client.get(url, headers=self.headers)
        self.cookies.update(set_cookies(answer))
        return answer

    async def post(self, url: str, data: dict[str, str]) -> httpx.Response:
        answer = await self.client.post(url, data=data, headers=self.headers)
        self.cookies.update(set_cookies(answer))
        return answer


async def person(client: httpx.AsyncClient, username: str, return_to: str = "/account") -> Person:
    header = await account_sign_in(client, username, return_to)
    name, _, value = header["cookie"].partition("=")
    return Person(client, {name: value})


async def walk_link(browser: Person, link: str, slack_base: str, decision: str = "allow") -> httpx.Response:
    """Open the link, continue to Slack, answer there, come back: the page the callback shows."""
    page = await browser.get(link)
    assert page.status_code == 200, page.text
    assert "Continue to Slack" in page.text
    assert urlsplit(slack_base).netloc in page.headers["content-security-policy"]  # the form may lead there
    onward = await browser.post(link, {"csrf_token": CSRF.search(page.text).group(1), "decision": "connect"})
    assert onward.status_code == 303, onward.text
    to_slack = onward.headers["location"]
    assert to_slack.startswith(f"{slack_base}/oauth/v2/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(to_slack).query).items()}
    async with httpx.AsyncClient() as outside:
        approved = await outside.post(f"{slack_base}/oauth/v2/authorize", data={**query, "decision": decision})
    assert approved.status_code == 302
    return await browser.get(approved.headers["location"])


async def bastion_token(client: httpx.AsyncClient, username: str = "ada") -> dict[str, str]:
    registered = await register(client, client_name="Notes app")
    tokens = await tokens_for(client, registered, username=username)
    return {"authorization": f"Bearer {tokens['access_token']}"}


async def legacy_session(client: httpx.AsyncClient, auth: dict[str, str], capabilities: dict) -> dict[str, str]:
    headers = {**auth, "accept": "application/json, text/event-stream"}
    init = initialize("2025-11-25")
    init["params"]["capabilities"] = capabilities
    opened = await client.post("/mcp", headers=headers, json=init)
    assert opened.status_code == 200, opened.text
    headers |= {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    done = await client.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202
    return headers


def sse_json(answer: httpx.Response) -> dict:
    import json

    if answer.headers["content-type"].startswith("application/json"):
        return answer.json()
    data = [line[5:].strip() for line in answer.text.splitlines() if line.startswith("data:")]
    return json.loads([d for d in data if d][-1])


async def legacy_call(client, headers, tool: str, arguments: dict | None = None) -> tuple[httpx.Response, dict]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments or {}}}
    answer = await client.post("/mcp", headers=headers, json=body)
    return answer, sse_json(answer)


def text_of(message: dict) -> str:
    return message["result"]["content"][0]["text"]


def modern_meta(capabilities: dict) -> dict:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    }


async def modern_call(client, auth, tool: str, capabilities: dict = URL_CAPABLE, **extra) -> dict:
    params = {"name": tool, "arguments": {}, "_meta": modern_meta(capabilities), **extra}
    answer = await client.post(
        "/mcp",
        headers={**modern_headers("tools/call", tool), **auth},
        json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params},
    )
    assert answer.status_code == 200, answer.text
    return sse_json(answer)
