"""Introspection under a flood (issue 9, item 2): refusals remembered briefly, calls rate-limited per issuer.

The bearer gate, the token router and the external issuer are put together by hand (support.gated), as app.py
does, but with a clock the test moves, so that limits are counted exactly and nothing depends on how fast this
machine is.
The issuer is tests/jwt_issuer.py, which lists every token it was asked about.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest

from bastion.resource.issuer import INTROSPECTION_BURST, INTROSPECTIONS_PER_SECOND, REFUSAL_SECONDS, ExternalIssuer
from bastion.resource.refusals import RecentRefusals
from bastion.resource.throttle import TokenBucket
from bastion.resource.tokens import TokenVerifier
from tests.clocks import Clock
from tests.resource.support import RESOURCE, Behind, gated, introspecting, present, refused, unavailable


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def behind():
    return Behind()


@pytest.fixture
async def gate(issuer, monkeypatch, clock, behind):
    async with gated(introspecting(issuer, monkeypatch), clock, behind) as http:
        yield http


def live(issuer) -> str:
    return issuer.opaque(
        {"active": True, "sub": "bob", "aud": RESOURCE, "iss": issuer.issuer, "exp": int(time.time()) + 60}
    )


def bogus() -> str:
    return secrets.token_urlsafe(24)


async def test_the_same_bogus_token_twice_is_asked_about_once(gate, issuer, clock, behind):
    token = bogus()
    before = len(issuer.introspected)
    refused(await present(gate, token))
    refused(await present(gate, token))
    assert issuer.introspected[before:] == [token]
    # A few seconds later it is asked about again: an issuer's "no" is not remembered for long.
    clock.now += REFUSAL_SECONDS
    refused(await present(gate, token))
    assert issuer.introspected[before:] == [token, token]
    assert behind.ran == []


async def test_many_requests_at_once_with_one_bogus_token_make_one_call(gate, issuer, behind):
    token = bogus()
    before = len(issuer.introspected)
    for answer in await asyncio.gather(*(present(gate, token) for _ in range(30))):
        refused(answer)
    assert issuer.introspected[before:] == [token]
    assert behind.ran == []


async def test_a_flood_of_bogus_tokens_is_held_to_the_rate_limit(gate, issuer, clock, behind):
    before = len(issuer.introspected)
    flood = [bogus() for _ in range(INTROSPECTION_BURST + 40)]
    answers = [await present(gate, token) for token in flood]
    for answer in answers[:INTROSPECTION_BURST]:
        refused(answer)
    # Over the limit the answer is "could not check" (503, retry), not a verdict on a token nobody looked at.
    for answer in answers[INTROSPECTION_BURST:]:
        unavailable(answer)
    assert issuer.introspected[before:] == flood[:INTROSPECTION_BURST]
    good = live(issuer)
    unavailable(await present(gate, good))
    assert behind.ran == []
    assert len(issuer.introspected) - before == INTROSPECTION_BURST
    # The bucket refills at its rate: one second later that many more questions may be asked.
    clock.now += 1.0
    assert (await present(gate, good)).status_code == 200
    assert issuer.introspected[-1] == good
    assert behind.ran == ["/mcp"]
    more = [bogus() for _ in range(int(INTROSPECTIONS_PER_SECOND) + 5)]
    answers = [await present(gate, token) for token in more]
    assert [answer.status_code for answer in answers].count(401) == int(INTROSPECTIONS_PER_SECOND) - 1
    assert len(issuer.introspected) - before == INTROSPECTION_BURST + INTROSPECTIONS_PER_SECOND


async def test_the_happy_path_is_asked_once_and_remembered(gate, issuer, behind):
    good = live(issuer)
    before = len(issuer.introspected)
    for _ in range(3):
        assert (await present(gate, good)).status_code == 200
    assert issuer.introspected[before:] == [good]  # the gate's 10 s cache of verified tokens, as before
    assert behind.ran == ["/mcp"] * 3


async def test_an_unreachable_issuer_is_not_remembered_as_a_refusal(gate, issuer):
    assert (await present(gate, live(issuer))).status_code == 200  # the metadata is in hand
    token = live(issuer)
    issuer.down = True  # now introspection answers 503
    try:
        unavailable(await present(gate, token))
    finally:
        issuer.down = False
    assert (await present(gate, token)).status_code == 200


async def test_a_refusal_for_one_resource_does_not_refuse_the_token_for_another(issuer, monkeypatch, clock):
    settings = introspecting(issuer, monkeypatch).resource.issuers[0]
    token = issuer.opaque({"active": True, "sub": "bob", "aud": "http://other:8000/mcp", "exp": int(time.time()) + 60})
    async with httpx.AsyncClient() as outbound:
        verify = TokenVerifier(None, [ExternalIssuer(settings, outbound, clock=clock)])
        assert await verify(token, RESOURCE) is None
        principal = await verify(token, "http://other:8000/mcp")
    assert principal is not None and principal.subject == "corp:bob"


# --- the parts ----------------------------------------------------------------------------------------------
def test_refusals_hold_hashes_only_and_are_bounded(clock):
    refusals = RecentRefusals(5.0, 100, clock)
    tokens = [bogus() for _ in range(150)]
    for token in tokens:
        refusals.add(RecentRefusals.key(token, RESOURCE))
    assert len(refusals) == 100
    assert not refusals.refused(RecentRefusals.key(tokens[0], RESOURCE))  # the oldest made room
    assert refusals.refused(RecentRefusals.key(tokens[-1], RESOURCE))
    assert not refusals.refused(RecentRefusals.key(tokens[-1], RESOURCE + "/"))
    for key in refusals._until:
        assert len(key) == 32
        assert not any(token.encode() in key for token in tokens)
    clock.now += 5.0
    assert not refusals.refused(RecentRefusals.key(tokens[-1], RESOURCE))
    refusals.add(RecentRefusals.key("fresh", RESOURCE))
    assert len(refusals) == 1  # the expired ones went first


def test_the_token_bucket(clock):
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now += 100.0  # never more than the burst, however long it rested
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now -= 50.0  # a clock stepping back neither mints tokens nor takes them away
    assert bucket.take() is False
    clock.now += 1.0
    assert [bucket.take(), bucket.take(), bucket.take()] == [True, True, False]
