"""One of three `bastion serve` instances behind HAProxy (on PostgreSQL, then on a single Redis) is SIGKILLed in
the middle of a burst of code redemptions, refresh-token rotations and authenticated tool calls, half of them sent
to that instance directly and half through the proxy.

Afterwards HAProxy's health checks take the dead instance out and every request after that succeeds, served by
the two others; every grant in the store is whole (its records were written, and revoked, together); and each
code or refresh token whose answer the crash lost was either used (the store holds what it was exchanged for)
or not (it works once now): never both, never neither."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bastion.oauth.grants import split_token
from bastion.store import Store, keys
from tests.waiting import eventually

from .calls import pid_call, served_by
from .instances import Deployment, deployed, refresh_form, register
from .test_workers import authorization_code, grant, redemption

pytestmark = pytest.mark.e2e
VICTIM = 1  # the instance killed (its index in Deployment.direct)
EACH = 16  # codes redeemed, refresh tokens rotated and tools called in the burst, of each
AFTER = 24  # tool calls through the proxy once it has taken the dead instance out
CLIENT = "crash-test"


@pytest.fixture(params=["postgres", "redis"])
def deployment(request: pytest.FixtureRequest, tmp_path) -> Iterator[Deployment]:
    with deployed(request.param, tmp_path) as d:
        yield d


@dataclass
class Sent:
    """One request of the burst and what came back: None when the crash lost the answer."""

    kind: str  # "code", "refresh" or "call"
    secret: str  # the code, the refresh token, or the access token presented
    route: str  # "victim" (its own address) or "proxy"
    answer: httpx.Response | None = None

    @property
    def lost(self) -> bool:
        # HAProxy answers 502 for a request whose server died under it (none is retried once its body was sent).
        return self.answer is None or (self.route == "proxy" and self.answer.status_code == 502)


async def census(store: Store) -> dict[str, Counter[str]]:
    """Per grant id, how many records of each kind the store holds under it (the grant record itself included)."""
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for kind in (keys.GRANT, *keys.ISSUED_KINDS):
        for key in await store.keys(keys.kind_prefix(kind)):
            found[key.split(keys.SEPARATOR)[1]][kind] += 1
    return found


def assert_whole(grants: dict[str, Counter[str]]) -> None:
    """Every grant is in one of the two shapes oauth/grants.py writes in single commits: authorized (the grant
    and its code) or redeemed (the used-code marker, one live refresh token, and an access token for the
    redemption and each rotation), and nothing issued lives on without its grant (revocation deletes all)."""
    for grant_id, kinds in grants.items():
        authorized = kinds == Counter({keys.GRANT: 1, keys.CODE: 1})
        redeemed = (
            kinds[keys.GRANT] == 1
            and kinds[keys.CODE] == 0
            and kinds[keys.USED_CODE] == 1
            and kinds[keys.REFRESH] == 1
            and kinds[keys.ACCESS] == kinds[keys.ROTATED] + 1
        )
        assert authorized or redeemed, f"grant {grant_id} is not whole: {dict(kinds)}"


async def one_time_state(store: Store, kind: str, secret: str) -> tuple[bool, bool]:
    """(still live, used) for a code or refresh token, read from the store."""
    parts = split_token(secret)
    assert parts is not None
    live, used = (keys.code, keys.used_code) if kind == "code" else (keys.refresh_token, keys.rotated_refresh)
    return await store.get(live(*parts)) is not None, await store.get(used(*parts)) is not None


async def test_an_instance_killed_mid_burst_leaves_whole_grants_and_the_others_serve(deployment):
    d = deployment
    victim, proxy = d.direct[VICTIM], d.base
    async with (
        httpx.AsyncClient(timeout=30) as direct,
        httpx.AsyncClient(timeout=30, verify=d.verify) as public,
    ):
        client_id = await register(direct, d.direct[0])
        codes, grants = await asyncio.gather(
            asyncio.gather(*(authorization_code(proxy, client_id, d.verify) for _ in range(EACH))),
            asyncio.gather(*(grant(proxy, client_id, d.verify) for _ in range(EACH))),
        )
        pids = [
            served_by(await direct.post(f"{i}/mcp", **pid_call(grants[0]["access_token"], CLIENT))) for i in d.direct
        ]
        survivors = set(pids) - {pids[VICTIM]}

        def request(sent: Sent) -> Any:
            http, base = (direct, victim) if sent.route == "victim" else (public, proxy)
            if sent.kind == "code":
                return http.post(f"{base}/token", data=redemption(proxy, client_id, sent.secret))
            if sent.kind == "refresh":
                return http.post(f"{base}/token", data=refresh_form(client_id, sent.secret))
            return http.post(f"{base}/mcp", **pid_call(sent.secret, CLIENT))

        async def send(sent: Sent) -> Sent:
            with contextlib.suppress(httpx.TransportError):  # the connection died with the instance: lost
                sent.answer = await request(sent)
            return sent

        burst = [
            Sent(kind, secret, "victim" if n % 2 == 0 else "proxy")
            for n in range(EACH)
            for kind, secret in (
                ("code", codes[n]),
                ("refresh", grants[n]["refresh_token"]),
                ("call", grants[n]["access_token"]),
            )
        ]
        tasks = [asyncio.create_task(send(s)) for s in burst]
        at_victim = [t for t, s in zip(tasks, burst, strict=True) if s.route == "victim"]
        pending = set(at_victim)
        # Killed once its first answers are back: the rest are mid-way, some with their commit done and their
        # answer not yet sent (a used code or token whose answer is lost), most not that far. (Half its share
        # answered was too late once a commit took one round trip: the rest were often done too.)
        while len(pending) > len(at_victim) - 2:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        os.kill(pids[VICTIM], signal.SIGKILL)  # `bastion serve` without --workers: that pid is the instance
        killed = time.monotonic()
        await asyncio.gather(*tasks)

        async def taken_out() -> bool:
            return f"Server {d.proxy_name(VICTIM)} is DOWN" in d.proxy_log.read_text(errors="replace")

        await eventually(taken_out, "HAProxy's health checks taking the killed instance out")
        out_after = time.monotonic() - killed

        for sent in burst:  # what was answered was answered in full
            if not sent.lost:
                assert sent.answer is not None and sent.answer.status_code == 200, (sent.kind, sent.answer.text)
        lost = [s for s in burst if s.lost]
        assert any(s.route == "victim" for s in lost), "the kill came after the burst: nothing was in flight"

        async with d.records() as store:  # as the crash left it
            before = await census(store)
            states = {s.secret: await one_time_state(store, s.kind, s.secret) for s in burst if s.kind != "call"}
        assert_whole(before)
        for sent in burst:
            if sent.kind != "call" and not sent.lost:
                assert states[sent.secret] == (False, True), f"an answered {sent.kind} is not used"

        # Every request from here on goes through the proxy, to the two instances left, and must succeed.
        received = [s.answer.json() for s in burst if s.kind != "call" and not s.lost]
        outcomes: Counter[str] = Counter()
        replayed: list[str] = []
        for sent in lost:
            if sent.kind == "call":
                continue
            live, used = states[sent.secret]
            assert live != used, f"a {sent.kind} in flight is {'both' if live else 'neither'} used and unused"
            grant_id = sent.secret.split(".")[0]
            again = await request(Sent(sent.kind, sent.secret, "proxy"))
            if live:  # never used: it works, once
                assert again.status_code == 200, again.text
                received.append(again.json())
                outcomes[f"{sent.kind} unused"] += 1
            else:  # used: what it was exchanged for is in the store (a whole grant); presenting it again is a replay
                assert before[grant_id][keys.REFRESH] == 1, "a used one left no successor"
                assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
                replayed.append(grant_id)
                outcomes[f"{sent.kind} used"] += 1
        for tokens in received:  # every token pair a client holds works: the access token, then the refresh
            served_by(await public.post(f"{proxy}/mcp", **pid_call(tokens["access_token"], CLIENT)))
            renewed = await public.post(f"{proxy}/token", data=refresh_form(client_id, tokens["refresh_token"]))
            assert renewed.status_code == 200, renewed.text

        fresh = await grant(proxy, client_id, d.verify)  # a whole new sign-in, through the proxy
        served = Counter(
            [
                served_by(await public.post(f"{proxy}/mcp", **pid_call(fresh["access_token"], CLIENT)))
                for _ in range(AFTER)
            ]
        )
        assert set(served) == survivors, (served, survivors)

        async with d.records() as store:
            after = await census(store)
        assert_whole(after)
        assert not any(grant_id in after for grant_id in replayed)  # a replay revoked its whole grant

    answered = sum(1 for s in burst if s.route == "victim" and not s.lost)
    print(
        f"\n{d.backend}: killed with {answered}/{len(at_victim)} of its requests answered; lost "
        f"{len(lost)} ({dict(Counter(s.kind for s in lost))}), in flight: {dict(outcomes)}; taken out by HAProxy "
        f"{out_after:.1f} s after the kill; {AFTER} calls after: {dict(served)}"
    )
    d.assert_clean()
