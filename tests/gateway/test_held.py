"""Calls held for a 2026-07-28 caller's answers: let go (the call at the server cancelled) when they expire, when
too many are held, and at shutdown; taken at most once."""

from __future__ import annotations

import asyncio

from bastion.gateway.held import Held, HeldCalls, Question
from tests.waiting import eventually


async def waiting_call() -> Held:
    return Held(asyncio.create_task(asyncio.Event().wait()), Question("elicitation/create", {}), relay=None)


async def test_a_held_call_is_taken_once():
    calls = HeldCalls()
    held = await waiting_call()
    key = calls.hold(held)
    assert calls.take(key) is held
    assert calls.take(key) is None and calls.take("made-up") is None
    assert not held.call.cancelled()
    held.call.cancel()


async def test_an_expired_call_is_let_go_and_cancelled_at_the_server():
    calls = HeldCalls(hold_seconds=0.05)
    held = await waiting_call()
    key = calls.hold(held)

    async def let_go() -> bool:
        return held.call.cancelled()

    await eventually(let_go, "the held call cancelled once it expired")
    assert calls.take(key) is None and len(calls) == 0


async def test_beyond_the_limit_the_oldest_is_let_go_and_closing_lets_all_go():
    calls = HeldCalls(max_held=2)
    first, second, third = [await waiting_call() for _ in range(3)]
    keys = [calls.hold(held) for held in (first, second, third)]
    await asyncio.sleep(0)  # let the cancellation land
    assert first.call.cancelled() and calls.take(keys[0]) is None
    assert len(calls) == 2
    calls.close()
    await asyncio.sleep(0)
    assert second.call.cancelled() and third.call.cancelled() and len(calls) == 0
