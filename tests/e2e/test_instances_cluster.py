"""Three `bastion serve` instances behind HAProxy round robin on a 3-master Redis Cluster, which each instance
recognises by asking the server (docs/deployment.md): the official SDK client's OAuth flow and tool calls served
by all three, a revocation refused by every instance within a second (the sharded bus channel, measured), and 200
concurrent redemptions of one code across the three with exactly one winner.

Only the 2026-07-28 era, as in test_instances.py: a legacy session lives in the process that opened it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthToken

from bastion.store import keys
from mcp import Client

from .calls import pid_call, served_by
from .instances import INSTANCES, Deployment, deployed, refresh_form, register
from .test_sdk_oauth import HeadlessBrowser, MemoryStorage, provider_for
from .test_workers import authorization_code, grant, redemption

pytestmark = pytest.mark.e2e
CLIENT = "cluster-test"
CODE_RACE = 200
REVOCATION_SECONDS = 1.0  # every instance refuses a revoked token within this
NEVER_SECONDS = 15.0  # a poll for the refusal gives up after this (past the bearer cache's 10 s)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployed("redis-cluster", tmp_path_factory.mktemp("redis-cluster")) as d:
        yield d


async def test_the_sdk_client_signs_in_refreshes_and_is_served_by_all_three(deployment, monkeypatch):
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
    async with httpx.AsyncClient(timeout=30) as direct:  # each instance accepts the renewed token itself
        assert {
            served_by(await direct.post(f"{i}/mcp", **pid_call(renewed.access_token, CLIENT))) for i in d.direct
        } == pids
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
        "\nredis-cluster: a revocation refused by the 3 instances after (ms from sending it, the revoking one first) "
        + "; ".join(
            ", ".join(f"{row[(n + k) % INSTANCES] * 1000:.0f}" for k in range(INSTANCES)) for n, row in enumerate(took)
        )
        + "; /revoke itself answered after "
        + ", ".join(f"{a * 1000:.0f}" for a in answered)
    )
    assert max(max(row) for row in took) < REVOCATION_SECONDS, took
    d.assert_clean()


async def test_one_code_redeemed_200_times_across_the_instances_wins_once(deployment):
    d = deployment
    limits = httpx.Limits(max_connections=CODE_RACE + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        client_id = await register(http, d.direct[1])
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
        # The losers' replays (by the client the code was issued to) revoked what the code issued, everywhere.
        for instance in d.direct:
            call = await http.post(f"{instance}/mcp", **pid_call(won["access_token"], CLIENT))
            assert call.status_code == 401, call.text
            renewal = await http.post(f"{instance}/token", data=refresh_form(client_id, won["refresh_token"]))
            assert renewal.status_code == 400 and renewal.json()["error"] == "invalid_grant", renewal.text
    grant_id = code.split(".")[0]
    async with d.records() as store:  # nothing of the grant is left on any master
        left = [key for kind in (keys.GRANT, *keys.ISSUED_KINDS) for key in await store.keys(keys.kind_prefix(kind))]
    assert not [key for key in left if key.split(keys.SEPARATOR)[1] == grant_id], left
    d.assert_clean()
