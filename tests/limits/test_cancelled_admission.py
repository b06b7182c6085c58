"""An admission cancelled while the counter store reserves (Envoy resets the policy
stream when the client goes away) gives back what was reserved, the app's counters
and a provider account's: nothing stays charged for a request that never went out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import CheckResult, CounterOp
from policy_sidecar.policy import PolicyEngine

from .test_account_quotas import OneSlotPerCall, org, setup, store
from .test_enforcer import ctx, rate_policy, token_policy

__all__ = ["store"]  # the fixture, imported


class Held(OneSlotPerCall):
    """Holds the ``index``-th ``check_and_add`` after it reserved, until released."""

    def __init__(self, inner: CounterStore, index: int) -> None:
        super().__init__(inner)
        self.index = index
        self.seen = 0
        self.reserved = asyncio.Event()
        self.go = asyncio.Event()

    async def check_and_add(self, ops: Sequence[CounterOp], now: float) -> CheckResult:
        result = await super().check_and_add(ops, now)
        self.seen += 1
        if self.seen == self.index:
            self.reserved.set()
            await self.go.wait()
        return result


@pytest.mark.parametrize("held_call", [1, 2], ids=["apps-counters", "accounts-counters"])
async def test_a_cancelled_admission_gives_everything_back(
    store: CounterStore, held_call: int
) -> None:
    enforcer, _, deployment, _ = setup(store, requests_per_minute=1, tokens_per_minute=1_000)
    held = Held(store, held_call)
    enforcer._counters = held
    engine = PolicyEngine([rate_policy(1), token_policy(1_000)])
    who = org("acme")
    admitting = asyncio.create_task(enforcer.admit(engine, who, ctx(who, 300, 400), deployment))
    await held.reserved.wait()
    admitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admitting
    held.go.set()
    held.index = 0  # hold nothing more
    # One request a minute, 1,000 tokens: a request as large is admitted only if the
    # cancelled one's share of every counter went back.
    for _ in range(100):
        again = await enforcer.admit(engine, who, ctx(who, 300, 400), deployment)
        if again.decision.allowed:
            break
        await asyncio.sleep(0.01)  # the give-back runs as a task of its own
    assert again.decision.allowed, again.decision.denial
