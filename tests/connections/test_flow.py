"""Connecting an account from a tool call to a retry that works, in process: Bastion's MCP endpoint and pages
through httpx, a browser played by hand (cookies kept per person), and the Slack stand-in as the provider.

Each era's form: the URL-elicitation-required error in 2025-11-25, input_required with a URL-mode elicitation in
2026-07-28, a tool error carrying the link for a client that cannot open links. Then the hostile cases: a link
forwarded to someone else, replayed or expired; a callback with a forged or swapped state; the provider refusing.
Every refusal leaves the store as it was, and no Slack token ever reaches a response.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from bastion.compose import build
from bastion.store import MemoryStore
from tests.clients import BASE, asgi_client, records
from tests.clocks import Clock
from tests.connections.flow import (
    CSRF,
    SECRET_ENV,
    URL_CAPABLE,
    app_for,
    bastion_token,
    connected_settings,
    has_at_least,
    legacy_call,
    legacy_session,
    modern_call,
    person,
    text_of,
    walk_link,
)
from tests.slack_mock import slack_server
from tests.waiting import eventually


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "s3cret")


@pytest.fixture
def slack():
    with slack_server("s3cret") as (stand_in, base):
        yield stand_in, base


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

        await eventually(lambda: has_at_least(connection_events(), 4), "four connection events recorded")
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


async def test_hostile_requests_to_the_connect_pages_get_clear_refusals(slack):
    _, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client)
        first = await modern_call(client, auth, "post_message", arguments={"text": "x"})
        link = first["result"]["inputRequests"]["connect:slack"]["params"]["url"]
        ada = await person(client, "ada")
        before = await records(client)
        attempts = [
            ("GET", "/connections/link/" + "A" * 5000),
            ("GET", "/connections/link/%00%0d%0a"),
            ("GET", "/connections/link/<script>alert(1)</script>"),
            ("POST", urlsplit(link).path),  # no CSRF token
            ("GET", "/connections/callback/slack"),
            ("GET", "/connections/callback/nope?state=x&code=y"),
            ("GET", "/connections/callback/slack?state=" + "s" * 10_000),
            ("GET", "/connections/callback/slack?state=a&state=b&code=c"),
            ("POST", "/account/disconnect"),
        ]
        for method, path in attempts:
            answer = await client.request(method, path, headers=ada.headers)
            assert 400 <= answer.status_code < 500, (method, path, answer.status_code)
            assert "<script>alert" not in answer.text and "Traceback" not in answer.text
        assert {k: v for k, v in (await records(client)).items() if not k.startswith("account:")} == {
            k: v for k, v in before.items() if not k.startswith("account:")
        }
        assert (await ada.get(link)).status_code == 200  # the real link still works


async def test_a_callback_after_signing_out_stores_nothing(slack):
    _, slack_base = slack
    async with asgi_client(app_for(slack_base), connected_settings(slack_base)) as client:
        auth = await bastion_token(client)
        first = await modern_call(client, auth, "post_message", arguments={"text": "x"})
        link = first["result"]["inputRequests"]["connect:slack"]["params"]["url"]
        ada = await person(client, "ada")
        page = await ada.get(link)
        onward = await ada.post(link, {"csrf_token": CSRF.search(page.text).group(1), "decision": "connect"})
        query = {k: v[0] for k, v in parse_qs(urlsplit(onward.headers["location"]).query).items()}
        account = await ada.get("/account")
        await ada.post("/account/sign-out", {"csrf_token": CSRF.search(account.text).group(1)})
        async with httpx.AsyncClient() as outside:
            approved = await outside.post(f"{slack_base}/oauth/v2/authorize", data={**query, "decision": "allow"})
        back = await ada.get(approved.headers["location"])
        assert back.status_code == 403 and "no longer signed in" in back.text
        assert await records(client, "connected:") == {}
