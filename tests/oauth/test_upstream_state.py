"""The upstream state is bound to the browser per sign-in: several sign-ins in one browser all complete, and a
callback opened in another browser is still refused without using anything up."""

import httpx

from tests.browser import cookie_header, set_cookies
from tests.clients import records
from tests.waiting import eventually

from .conftest import REDIRECT, code_exchange
from .test_upstream_login import fake, to_provider  # noqa: F401 - the in-process app with a fake provider


async def callback(client: httpx.AsyncClient, state: str, jar: dict[str, str]) -> httpx.Response:
    return await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(jar))


async def redeem(client: httpx.AsyncClient, done: httpx.Response, client_id: str) -> httpx.Response:
    code = httpx.URL(done.headers["location"]).params["code"]
    return await client.post("/token", data=code_exchange(code, client_id, resource=None))


def cleared(response: httpx.Response) -> list[str]:
    return [name for name, value in set_cookies(response).items() if not value]


async def test_two_sign_ins_in_one_browser_both_complete(fake):  # noqa: F811
    client, _ = fake
    first_state, first_cookie, first_client = await to_provider(client)
    second_state, second_cookie, second_client = await to_provider(client)
    assert first_cookie.keys() != second_cookie.keys()  # the second did not overwrite the first
    jar = {**first_cookie, **second_cookie}  # the browser sends both
    for name in jar:
        assert len(name) + len(jar[name]) < 100  # a pending sign-in costs the Cookie header little
    # The first one started finishes last, and the other way round.
    second = await callback(client, second_state, jar)
    assert second.status_code == 302 and second.headers["location"].startswith(REDIRECT + "?code=")
    assert cleared(second) == list(second_cookie)  # only its own cookie is cleared
    jar = {k: v for k, v in jar.items() if k not in cleared(second)}
    first = await callback(client, first_state, jar)
    assert first.status_code == 302 and first.headers["location"].startswith(REDIRECT + "?code=")
    assert cleared(first) == list(first_cookie)
    assert (await redeem(client, first, first_client)).status_code == 200
    assert (await redeem(client, second, second_client)).status_code == 200


async def test_a_callback_in_another_browser_is_refused_and_uses_nothing_up(fake):  # noqa: F811
    client, _ = fake
    state, cookies, _ = await to_provider(client)  # browser A
    _, other_browser, _ = await to_provider(client)  # browser B, with a sign-in of its own
    [(name, binding)] = cookies.items()
    [(_, other_binding)] = other_browser.items()
    before = await records(client)
    for jar in (
        {},  # no cookie at all
        other_browser,  # B's own cookie, for another state
        {name: other_binding},  # the right name, another sign-in's binding
        {name: "x" * 43},
        {name.replace("-state", "-other-state"): binding},
    ):
        refused = await callback(client, state, jar)
        assert refused.status_code == 400 and "started in another browser" in refused.text, jar
        assert "location" not in refused.headers
    duplicated = await client.get(
        "/callback/fake",
        params={"code": "c", "state": state},
        headers={"cookie": f"{name}={binding}; {name}={binding}"},
    )
    assert duplicated.status_code == 400 and "started in another browser" in duplicated.text
    assert await records(client) == before  # the state, the transaction, no code or grant: all as they were
    done = await callback(client, state, cookies)
    assert done.status_code == 302 and done.headers["location"].startswith(REDIRECT + "?code=")


async def test_a_state_completes_once_and_then_clears_its_cookie(fake):  # noqa: F811
    client, _ = fake
    state, cookies, _ = await to_provider(client)
    assert (await callback(client, state, cookies)).status_code == 302
    before = await records(client)
    replay = await callback(client, state, cookies)
    assert replay.status_code == 400 and "expired or was already completed" in replay.text
    assert cleared(replay) == list(cookies) and await records(client) == before


async def test_a_callback_without_a_state_is_refused(fake):  # noqa: F811
    client, _ = fake
    _, cookies, _ = await to_provider(client)
    before = await records(client)
    for params in ({"code": "c"}, {"code": "c", "state": ""}):
        refused = await client.get("/callback/fake", params=params, headers=cookie_header(cookies))
        assert refused.status_code == 400 and "started in another browser" in refused.text
    assert await records(client) == before


async def test_a_callback_refused_here_is_a_failed_sign_in_in_the_audit_trail(fake):  # noqa: F811
    client, _ = fake
    state, _, _ = await to_provider(client)
    refused = await callback(client, state, {})  # no cookie: another browser, or a forwarded link

    async def failed() -> list[dict]:
        return [r for r in (await records(client, "audit:")).values() if r["type"] == "signin.failed"]

    async def recorded() -> bool:
        return bool(await failed())

    await eventually(recorded, "the failed sign-in recorded")
    [event] = await failed()
    assert event["outcome"] == "failure" and event["details"] == {"method": "fake", "reason": "another browser"}
    assert event["client_addr"] == "127.0.0.1" and event["request_id"] == refused.headers["x-request-id"]
