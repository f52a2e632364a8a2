"""`exp`, `nbf` and `iat` are JSON numbers of seconds, in JWTs and in introspection answers (issue 9, item 11).

PyJWT reads them with int(), which takes the string "9999999999" and the boolean true (an int in Python) as
dates; each is refused here, with every other kind of non-number, a null, and values no real date has.
"""

from __future__ import annotations

import json
import time

import pytest

from bastion.resource.numeric_date import LATEST, numeric_date
from tests.clients import asgi_client
from tests.resource.support import RESOURCE, call, introspecting, issuer_app, refused, signed_by_hand, who


@pytest.fixture
async def bastion(issuer, monkeypatch):
    async with asgi_client(issuer_app(), introspecting(issuer, monkeypatch)) as http:
        yield http


def sound(claim: str) -> int:
    """A value for the claim that would pass, so that only the type is wrong in each hostile case."""
    now = int(time.time())
    return now + 300 if claim == "exp" else now - 10


def not_numbers(claim: str) -> dict[str, object]:
    good = sound(claim)
    return {
        "a numeric string": str(good),  # PyJWT would take it
        "a decimal string": f"{good}.0",
        "an empty string": "",
        "true": True,  # an int in Python: PyJWT would read nbf/iat true as 1970, exp true as expired
        "false": False,
        "null": None,
        "a list": [good],
        "an object": {"seconds": good},
        "10**30": 10**30,  # parses as a float far past the year 9999
        "2**63": 2**63,
        "just past the year 9999": LATEST + 1,
        "negative": -1,
        "hugely negative": -(10**30),
    }


def jwt_with(issuer, claim: str, value) -> str:
    claims = {**issuer.claims(RESOURCE), claim: value}  # not through claims(): that drops a None
    return issuer.mint(claims)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_a_jwt_time_claim_that_is_not_a_number_is_refused(bastion, issuer, claim):
    for value in not_numbers(claim).values():
        response = await call(bastion, jwt_with(issuer, claim, value))
        refused(response)
    assert who(await call(bastion, jwt_with(issuer, claim, sound(claim))))  # the same token with a number


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_a_jwt_time_claim_beyond_what_json_numbers_hold_is_refused(bastion, issuer, claim):
    # Written into the JSON by hand: what a lenient parser turns into inf, nan or a 400-digit int.
    for literal in ("Infinity", "-Infinity", "NaN", "1e400", "1" + "0" * 400):
        raw = json.dumps({**issuer.claims(RESOURCE), claim: 1234567}).replace("1234567", literal).encode()
        response = await call(bastion, signed_by_hand(issuer, {}, raw))
        refused(response)
    raw = json.dumps({**issuer.claims(RESOURCE), claim: sound(claim)}).encode()
    assert who(await call(bastion, signed_by_hand(issuer, {}, raw)))


async def test_numbers_in_every_form_json_has_are_accepted(bastion, issuer):
    now = time.time()
    assert who(await call(bastion, issuer.mint(issuer.claims(RESOURCE, exp=now + 300.5, nbf=now - 1.25, iat=now))))
    assert who(await call(bastion, issuer.mint(issuer.claims(RESOURCE, exp=LATEST, iat=0))))


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_an_introspection_answer_time_claim_that_is_not_a_number_is_refused(bastion, issuer, claim):
    answer = {"active": True, "sub": "bob", "aud": RESOURCE, "exp": sound("exp")}
    for value in not_numbers(claim).values():
        response = await call(bastion, issuer.opaque({**answer, claim: value}))
        refused(response)
    assert who(await call(bastion, issuer.opaque({**answer, claim: sound(claim)})))


async def test_an_introspection_answer_with_numbers_is_accepted(bastion, issuer):
    now = time.time()
    answer = {"active": True, "sub": "bob", "aud": RESOURCE, "exp": now + 60.5, "nbf": now - 1, "iat": int(now)}
    assert who(await call(bastion, issuer.opaque(answer)))["subject"] == "corp:bob"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (1.5, 1.5), (LATEST, LATEST), (True, None), ("1", None), (None, None), (float("inf"), None)],
)
def test_numeric_date(value, expected):
    assert numeric_date(value) == expected
