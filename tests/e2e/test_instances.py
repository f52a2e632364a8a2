"""Three `bastion serve` instances on one shared store (PostgreSQL, a single Redis, a 3-master Redis Cluster that
each instance recognises by asking the server) behind HAProxy round robin
without affinity, as docs/deployment.md describes: the official SDK client's OAuth flow and tool calls served by
all three, a revocation reaching every instance through the bus, one-time codes and refresh tokens raced across
instances, a revocation through each instance refused by every instance within a second (measured), and the store
stopped under them and started again.

The 2026-07-28 era is tested here; a legacy session spread over the instances is in test_instances_sessions.py,
a crash in test_instances_crash.py."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthToken

from bastion.resource.bearer import CACHE_SECONDS
from mcp import Client
from tests.oauth.conftest import REDIRECT
from tests.waiting import eventually

from .calls import pid_call, served_by
from .instances import INSTANCES, Deployment, deployed, refresh_form, register
from .test_sdk_oauth import HeadlessBrowser, MemoryStorage, provider_for
from .test_workers import authorization_code, grant, redemption

pytestmark = pytest.mark.e2e
CODE_RACE = 200
REFRESH_RACE = 50
CLIENT = "instances-test"
REVOCATION_SECONDS = 1.0  # every instance refuses a revoked token within this
NEVER_SECONDS = 15.0  # a poll for the refusal gives up after this (past the bearer cache's 10 s)


@pytest.fixture(scope="module", params=["postgres", "redis", "redis-cluster"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The store of the tests' own, three instances sharing it (same secrets, same public URL), HAProxy in front."""
    with deployed(request.param, tmp_path_factory.mktemp(request.param)) as d:
        yield d


async def refused_everywhere(http: httpx.AsyncClient, d: Deployment, client_id: str, tokens: dict[str, Any]) -> None:
    """Every instance, asked directly, refuses the access token (401 invalid_token) and the refresh token
    (invalid_grant): nothing of the grant still works anywhere."""
    for instance in d.direct:
        call = await http.post(f"{instance}/mcp", **pid_call(tokens["access_token"], CLIENT))
        assert call.status_code == 401 and 'error="invalid_token"' in call.headers["www-authenticate"], call.text
        renewed = await http.post(f"{instance}/token", data=refresh_form(client_id, tokens["refresh_token"]))
        assert renewed.status_code == 400 and renewed.json()["error"] == "invalid_grant", renewed.text


async def test_the_sdk_client_is_served_by_all_three_and_a_revocation_reaches_each_over_the_bus(
    deployment, monkeypatch
):
    d = deployment
    monkeypatch.setenv("SSL_CERT_FILE", str(d.trust))  # the SDK client and the headless browser trust the proxy
    url = f"{d.base}/mcp"
    storage, browser = MemoryStorage(), HeadlessBrowser()
    pids: set[int] = set()
    async with (
        httpx2.AsyncClient(auth=provider_for(url, storage, browser), timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client,
    ):
        for _ in range(3 * INSTANCES):  # round robin: each instance gets some of the calls
            pids.add(int((await client.call_tool("pid", {})).content[0].text))
    assert len(pids) == INSTANCES, pids
    first = storage.tokens
    assert first is not None and first.refresh_token and browser.visits == 1

    # The access token has run out: the SDK refreshes it (on whichever instance) without the browser.
    storage.tokens = OAuthToken(
        access_token="expired.token", token_type="Bearer", expires_in=-1, refresh_token=first.refresh_token
    )
    provider = provider_for(url, storage, browser)
    provider.context.token_expiry_time = 1.0
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client,
    ):
        assert int((await client.call_tool("pid", {})).content[0].text) in pids
    renewed = storage.tokens
    assert browser.visits == 1 and renewed.refresh_token not in (None, first.refresh_token)
    assert storage.client is not None

    async with httpx.AsyncClient(timeout=30) as direct:
        # Each instance verifies the renewed token itself, and so remembers it for CACHE_SECONDS.
        served = {served_by(await direct.post(f"{i}/mcp", **pid_call(renewed.access_token, CLIENT))) for i in d.direct}
        assert served == pids
        revoked_at = time.monotonic()
        async with httpx.AsyncClient(verify=d.verify, timeout=30) as public:
            form = {"client_id": storage.client.client_id, "token": renewed.refresh_token}
            assert (await public.post(f"{d.base}/revoke", data=form)).status_code == 200

        async def refused_by(instance: str) -> float:
            async def refused() -> bool:
                answer = await direct.post(f"{instance}/mcp", **pid_call(renewed.access_token, CLIENT))
                assert answer.status_code in (200, 401), answer.text
                return answer.status_code == 401

            await eventually(refused, f"{instance} refusing the revoked token")
            return time.monotonic() - revoked_at

        took = await asyncio.gather(*(refused_by(i) for i in d.direct))
    print(
        f"\n{d.backend}: revocation refused by the 3 instances after "
        + ", ".join(f"{t * 1000:.0f}" for t in took)
        + " ms"
    )
    # Not a timing bound: every instance let go before its cache would have, so the bus told each of them.
    assert max(took) < CACHE_SECONDS
    d.assert_clean()


async def refused_after(http: httpx.AsyncClient, instance: str, token: str, since: float) -> float:
    """Seconds from `since` until `instance` refuses `token` (401 invalid_token), polled as fast as it answers."""
    while True:
        answer = await http.post(f"{instance}/mcp", **pid_call(token, CLIENT))
        if answer.status_code == 401:
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]
            return time.monotonic() - since
        served_by(answer)  # until then it is served, nothing else
        assert time.monotonic() - since < NEVER_SECONDS, f"{instance} never refused the revoked token"
        await asyncio.sleep(0.005)


async def test_a_revocation_through_any_instance_is_refused_by_every_instance_within_a_second(deployment):
    d = deployment
    took: list[list[float]] = []  # per revocation, seconds from sending it until each instance refused
    answered: list[float] = []  # per revocation, seconds until /revoke itself answered
    async with httpx.AsyncClient(timeout=30) as http:
        client_id = await register(http, d.direct[0])
        for origin in d.direct:  # revoked through each instance in turn
            tokens = await grant(d.base, client_id, d.verify)
            for instance in d.direct:  # each verifies the token, and so would trust it for CACHE_SECONDS
                served_by(await http.post(f"{instance}/mcp", **pid_call(tokens["access_token"], CLIENT)))
            revoked_at = time.monotonic()
            form = {"client_id": client_id, "token": tokens["refresh_token"]}
            assert (await http.post(f"{origin}/revoke", data=form)).status_code == 200
            answered.append(time.monotonic() - revoked_at)
            took.append(
                await asyncio.gather(*(refused_after(http, i, tokens["access_token"], revoked_at) for i in d.direct))
            )
            for instance in d.direct:  # the refresh token is dead everywhere too
                renewal = await http.post(f"{instance}/token", data=refresh_form(client_id, tokens["refresh_token"]))
                assert renewal.status_code == 400 and renewal.json()["error"] == "invalid_grant", renewal.text
    print(
        f"\n{d.backend}: a revocation refused by the 3 instances after (ms from sending it, the revoking one first) "
        + "; ".join(
            ", ".join(f"{row[(n + k) % INSTANCES] * 1000:.0f}" for k in range(INSTANCES)) for n, row in enumerate(took)
        )
        + "; /revoke itself answered after "
        + ", ".join(f"{a * 1000:.0f}" for a in answered)
    )
    assert max(max(row) for row in took) < REVOCATION_SECONDS, took
    d.assert_clean()


async def test_one_code_redeemed_200_times_across_instances_wins_once_and_the_replays_revoke_it(deployment):
    d = deployment
    limits = httpx.Limits(max_connections=CODE_RACE + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        client_id = await register(http, d.direct[0])
        code = await authorization_code(d.base, client_id, d.verify)
        form = redemption(d.base, client_id, code)
        answers = await asyncio.gather(
            *(http.post(f"{d.direct[n % INSTANCES]}/token", data=form) for n in range(CODE_RACE))
        )
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {200: 1, 400: CODE_RACE - 1}, statuses
        refusals = [a for a in answers if a.status_code == 400]
        assert {a.json()["error"] for a in refusals} == {"invalid_grant"}
        assert all("access_token" not in a.text for a in refusals)
        [won] = [a.json() for a in answers if a.status_code == 200]
        assert won["access_token"] and won["refresh_token"]
        # A replay by the client the code was issued to revokes what the code issued (docs/authorization.md).
        await refused_everywhere(http, d, client_id, won)
    d.assert_clean()


async def test_one_refresh_token_used_50_times_across_instances_renews_once_and_the_reuse_revokes_the_grant(
    deployment,
):
    d = deployment
    limits = httpx.Limits(max_connections=REFRESH_RACE + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        client_id = await register(http, d.direct[1])
        tokens = await grant(d.base, client_id, d.verify)
        for instance in d.direct:  # each instance remembers the first access token as verified
            served_by(await http.post(f"{instance}/mcp", **pid_call(tokens["access_token"], CLIENT)))
        form = refresh_form(client_id, tokens["refresh_token"])
        started = time.monotonic()
        answers = await asyncio.gather(
            *(http.post(f"{d.direct[n % INSTANCES]}/token", data=form) for n in range(REFRESH_RACE))
        )
        statuses = Counter(a.status_code for a in answers)
        assert statuses == {200: 1, 400: REFRESH_RACE - 1}, statuses
        assert {a.json()["error"] for a in answers if a.status_code == 400} == {"invalid_grant"}
        [renewed] = [a.json() for a in answers if a.status_code == 200]
        assert renewed["refresh_token"] != tokens["refresh_token"]

        # The rotated token came back: the grant is revoked, so the one new pair is dead everywhere, and every
        # instance lets go of the first access token it had cached (the bus, before its cache would expire).
        await refused_everywhere(http, d, client_id, renewed)

        async def old_refused() -> bool:
            answers = [await http.post(f"{i}/mcp", **pid_call(tokens["access_token"], CLIENT)) for i in d.direct]
            return all(a.status_code == 401 for a in answers)

        await eventually(old_refused, "every instance refusing the first access token", seconds=CACHE_SECONDS)
        assert time.monotonic() - started < CACHE_SECONDS
        await refused_everywhere(http, d, client_id, tokens)
    d.assert_clean()


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "temporarily_unavailable"
    assert not re.search(r"redis|postgres|connect|refused|127\.0\.0\.1", answer.text, re.I)  # nothing leaked
    assert answer.headers["retry-after"].isdigit()


async def test_the_store_stops_under_the_instances_they_answer_503_and_serve_again_when_it_is_back(deployment):
    d = deployment
    async with httpx.AsyncClient(timeout=60) as http:
        client_id = await register(http, d.direct[2])
        tokens = await grant(d.base, client_id, d.verify)  # never presented to /mcp: no instance has verified it
        registration = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        d.store_down()
        try:
            for instance in d.direct:
                renewal, registered, call = await asyncio.gather(
                    http.post(f"{instance}/token", data=refresh_form(client_id, tokens["refresh_token"])),
                    http.post(f"{instance}/register", json=registration),
                    http.post(f"{instance}/mcp", **pid_call(tokens["access_token"], CLIENT)),
                )
                assert_unavailable(renewal)
                assert_unavailable(registered)
                assert call.status_code == 503 and call.headers["retry-after"].isdigit(), call.text
                assert "result" not in call.text  # the tool never ran
        except AssertionError:
            d.assert_clean()  # an answer other than 503 comes with a traceback in an instance's log: show it
            raise
        finally:
            d.store_up()

        # Back without a restart: each instance registers, issues and verifies again (polled: reconnection).
        async def serving(instance: str) -> bool:
            answer = await http.post(f"{instance}/register", json=registration)
            assert answer.status_code in (201, 503), answer.text
            return answer.status_code == 201

        for instance in d.direct:
            await eventually(lambda i=instance: serving(i), f"{instance} registering clients again")
        # A new client: a crashed Redis may have lost the last second of writes (appendfsync everysec).
        fresh = await grant(d.base, await register(http, d.direct[0]), d.verify)
        for instance in d.direct:
            served_by(await http.post(f"{instance}/mcp", **pid_call(fresh["access_token"], CLIENT)))
    d.assert_clean()
