"""Connecting an account from a tool call to a retry that works, in process: Bastion's MCP endpoint and pages
through httpx, a browser played by hand (cookies kept per person), and the Slack stand-in as the provider.

Each era's form: the URL-elicitation-required error in 2025-11-25, input_required with a URL-mode elicitation in
2026-07-28, a tool error carrying the link for a client that cannot open links. Then the hostile cases: a link
forwarded to someone else, replayed or expired; a callback with a forged or swapped state; the provider refusing.
Every refusal leaves the store as it was, and no Slack token ever reaches a response.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bastion import App, Context
from bastion.compose import build
from bastion.store import MemoryStore
from tests.browser import account_sign_in, cookie_header, set_cookies
from tests.clients import BASE, asgi_client, local_settings, records
from tests.clocks import Clock
from tests.mcp.conftest import MODERN, modern_headers
from tests.messages import initialize
from tests.oauth.conftest import register, tokens_for
from tests.slack_mock import slack_entry, slack_server
from tests.waiting import eventually

SECRET_ENV = "BASTION_TEST_CONNECTION_SECRET"
STATE_SECRET = "Qz7-kP2vX9mW4tR8nB1cL6yH3jF0sD5gA_eU"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
URL_CAPABLE = {"elicitation": {"form": {}, "url": {}}}


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "s3cret")


@pytest.fixture
def slack():
    with slack_server("s3cret") as (stand_in, base):
        yield stand_in, base


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


async def _has(found, count: int) -> bool:
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


async def test_2025_11_25_the_error_names_a_link_and_the_retry_works(slack):
    stand_in, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client)
        session = await legacy_session(client, auth, URL_CAPABLE)
        answer, message = await legacy_call(client, session, "post_message", {"text": "hi"})
        assert answer.status_code == 200
        error = message["error"]
        assert error["code"] == -32042
        [elicitation] = error["data"]["elicitations"]
        assert elicitation["mode"] == "url" and elicitation["elicitationId"]
        assert elicitation["url"].startswith(f"{BASE}/connections/link/")
        assert "post_message" in elicitation["message"] and "Slack" in elicitation["message"]
        assert await records(client, "connected:") == {}  # nothing connected by asking

        ada = await person(client, "ada")
        done = await walk_link(ada, elicitation["url"], slack_base)
        assert done.status_code == 200 and "You can close this window" in done.text

        _, retried = await legacy_call(client, session, "post_message", {"text": "hi"})
        assert text_of(retried) == "posted 'hi' as U0ADA"
        # Another tool for the same provider needs no new consent; a wider scope asks again.
        _, again = await legacy_call(client, session, "whoami")
        assert text_of(again) == "U0ADA"
        _, wider = await legacy_call(client, session, "upload")
        assert wider["error"]["code"] == -32042
        page = await ada.get(wider["error"]["data"]["elicitations"][0]["url"])
        assert "chat:write" in page.text and "files:write" in page.text  # everything, so nothing is lost

        account = await ada.get("/account")
        assert "Connected accounts" in account.text and "U0ADA in Acme" in account.text
        for token in stand_in.tokens:  # no Slack token on any page or answer
            assert token not in account.text and token not in str(retried) and token not in done.text


async def test_2026_07_28_input_required_then_the_retry_runs_the_tool(slack):
    _, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client)
        first = await modern_call(client, auth, "post_message", arguments={"text": "yo"})
        result = first["result"]
        assert result["resultType"] == "input_required"
        asked = result["inputRequests"]["connect:slack"]
        assert asked["method"] == "elicitation/create" and asked["params"]["mode"] == "url"
        link = asked["params"]["url"]

        # Declined: the tool does not run.
        declined = await modern_call(
            client,
            auth,
            "post_message",
            arguments={"text": "yo"},
            inputResponses={"connect:slack": {"action": "decline"}},
            requestState=result["requestState"],
        )
        assert declined["result"]["isError"] and "declined" in text_of(declined)

        await walk_link(await person(client, "ada"), link, slack_base)
        done = await modern_call(
            client,
            auth,
            "post_message",
            arguments={"text": "yo"},
            inputResponses={"connect:slack": {"action": "accept"}},
            requestState=result["requestState"],
        )
        assert done["result"]["resultType"] == "complete" and text_of(done) == "posted 'yo' as U0ADA"
        # A tool that asks only once running gets the same account, now connected.
        assert text_of(await modern_call(client, auth, "later")) == "later as U0ADA"


async def test_a_tool_asking_while_it_runs_gets_the_same_treatment(slack):
    _, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client)
        first = await modern_call(client, auth, "later")
        assert first["result"]["inputRequests"]["connect:slack"]["params"]["mode"] == "url"


async def test_a_client_that_cannot_open_links_gets_the_link_in_the_tool_error(slack):
    _, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client)
        answer = await modern_call(
            client, auth, "post_message", capabilities={"elicitation": {"form": {}}}, arguments={"text": "x"}
        )
        assert answer["result"]["isError"]
        assert f"{BASE}/connections/link/" in text_of(answer)
        session = await legacy_session(client, auth, {})
        _, legacy = await legacy_call(client, session, "post_message", {"text": "x"})
        assert legacy["result"]["isError"] and "/connections/link/" in text_of(legacy)


async def test_a_forwarded_link_is_refused_to_anyone_else_and_changes_nothing(slack):
    stand_in, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client, "ada")
        first = await modern_call(client, auth, "post_message", arguments={"text": "x"})
        link = first["result"]["inputRequests"]["connect:slack"]["params"]["url"]
        mallory = await person(client, "mallory")
        before = await records(client)
        page = await mallory.get(link)
        assert page.status_code == 403 and "made for another account" in page.text
        # Even with a good form (Mallory's own CSRF token): refused before the link is used up.
        own = CSRF.search((await mallory.get("/account")).text).group(1)
        posted = await mallory.post(link, {"csrf_token": own, "decision": "connect"})
        assert posted.status_code == 403
        assert {k: v for k, v in (await records(client)).items() if not k.startswith("account:")} == {
            k: v for k, v in before.items() if not k.startswith("account:")
        }
        # A browser with no session is asked to sign in, by Ada's method only.
        anonymous = await client.get(link)
        assert anonymous.status_code == 200 and 'value="dev"' in anonymous.text and "Connect" not in anonymous.text
        # The link still serves Ada, once.
        ada = await person(client, "ada", urlsplit(link).path)
        assert "connected" in (await walk_link(ada, link, slack_base)).text
        replay = await ada.get(link)
        assert replay.status_code == 410 and "expired or was already used" in replay.text
        assert len(stand_in.tokens) == 1

        async def connection_events() -> list[dict]:
            return [e for e in (await records(client, "audit:")).values() if e["type"].startswith("connection.")]

        await eventually(lambda: _has(connection_events(), 4), "four connection events recorded")
        events = await connection_events()
        assert [(e["type"], e["subject"], e["details"].get("reason")) for e in events] == [
            ("connection.requested", "dev:ada", None),
            ("connection.refused", "dev:ada", "another user"),  # Ada's link; who tried is in the details
            ("connection.refused", "dev:ada", "another user"),
            ("connection.connected", "dev:ada", None),
        ]
        assert events[1]["details"]["seen"] == "dev:mallory"
        assert not any(token in str(events) for token in stand_in.tokens)


async def test_a_link_expires(slack):
    _, slack_base = slack
    clock = Clock()
    asgi = build(app_for(slack_base), connected_settings(slack_base), store=MemoryStore(clock=clock))
    async with asgi_client(asgi) as client:
        auth = await bastion_token(client)
        first = await modern_call(client, auth, "post_message", arguments={"text": "x"})
        link = first["result"]["inputRequests"]["connect:slack"]["params"]["url"]
        ada = await person(client, "ada")
        clock.now += 601
        assert (await ada.get(link)).status_code == 410


async def test_forged_swapped_and_refused_callbacks_store_nothing(slack):
    stand_in, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client, "ada")
        ada = await person(client, "ada")
        mallory = await person(client, "mallory")

        async def to_slack() -> tuple[str, dict]:
            first = await modern_call(client, auth, "post_message", arguments={"text": "x"})
            link = first["result"]["inputRequests"]["connect:slack"]["params"]["url"]
            page = await ada.get(link)
            onward = await ada.post(link, {"csrf_token": CSRF.search(page.text).group(1), "decision": "connect"})
            return onward.headers["location"], {
                k: v[0] for k, v in parse_qs(urlsplit(onward.headers["location"]).query).items()
            }

        _, query = await to_slack()
        before = await records(client, "connected:")
        forged = await ada.get(f"/connections/callback/slack?code=abc&state={'A' * 43}")
        assert forged.status_code == 400
        # Ada's state finished in Mallory's browser (she has not Ada's binding cookie): refused, state kept.
        async with httpx.AsyncClient() as outside:
            approved = await outside.post(f"{slack_base}/oauth/v2/authorize", data={**query, "decision": "allow"})
        callback = approved.headers["location"]
        swapped = await mallory.get(callback)
        assert swapped.status_code == 400 and "another browser" in swapped.text
        assert await records(client, "connected:") == before
        # Ada's own browser still completes it.
        assert "connected" in (await ada.get(callback)).text
        assert len(await records(client, "connected:")) == 1
        replayed = await ada.get(callback)  # the state went with its first use
        assert replayed.status_code == 400

        # The user says no at Slack: nothing more is kept.
        await ada.post(
            "/account/disconnect",
            {"csrf_token": CSRF.search((await ada.get("/account")).text).group(1), "connection": "slack"},
        )
        assert await records(client, "connected:") == {}
        _, query = await to_slack()
        async with httpx.AsyncClient() as outside:
            denied = await outside.post(f"{slack_base}/oauth/v2/authorize", data={**query, "decision": "deny"})
        refused = await ada.get(denied.headers["location"])
        assert refused.status_code == 400 and "did not grant" in refused.text
        assert await records(client, "connected:") == {}
        assert stand_in.revoked  # the disconnect revoked the first token at Slack
