"""The enforcer over real counter stores: reservations under concurrency, settling,
fail-open and fail-closed when the store is unreachable, shadow counters."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from policy_sidecar.counters import (
    CounterStore,
    CounterStoreUnavailable,
    InMemoryCounterStore,
    RedisCounterStore,
)
from policy_sidecar.counters.penalties import InMemoryPenaltyBox
from policy_sidecar.enforcer import Enforcer, duration
from policy_sidecar.identity import Identity
from policy_sidecar.policy import PolicyDefinition, PolicyEngine, PreRequestContext
from policy_sidecar.policy.definition import RateLimitConfig, TokenLimitConfig
from policy_sidecar.providers import Usage
from tests.conftest import FakeClock

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield InMemoryCounterStore()
        return
    redis_store = RedisCounterStore.from_url(REDIS_URL)
    yield redis_store
    await redis_store.aclose()


def caller() -> Identity:
    # A fresh org per test keeps Redis keys apart.
    return Identity(app_id="a", org_id=f"o-{uuid.uuid4().hex[:8]}", environment="dev", key_id="k")


def ctx(identity: Identity, estimated: int, max_tokens: int) -> PreRequestContext:
    return PreRequestContext(
        request_size_bytes=100,
        estimated_tokens=estimated,
        model="gpt-4o-mini",
        org_id=identity.org_id,
        app_id=identity.app_id,
        environment=identity.environment,
        provider="openai",
        stream=False,
        max_tokens=max_tokens,
    )


def token_policy(limit: int, **kw: object) -> PolicyDefinition:
    config = TokenLimitConfig.model_validate({"limit": limit, "window": "1h", **kw})
    return PolicyDefinition(id="tok", name="tokens", type="token_limit", config=config)


def rate_policy(requests: int, pid: str = "rl", **kw: object) -> PolicyDefinition:
    config = RateLimitConfig.model_validate(
        {"requests": requests, "window": "1m", **kw.pop("config", {})}
    )  # type: ignore[arg-type]
    return PolicyDefinition(id=pid, name=pid, type="rate_limit", config=config, **kw)  # type: ignore[arg-type]


async def test_fifty_concurrent_requests_cannot_overshoot_a_nearly_full_window(
    store: CounterStore,
) -> None:
    clock = FakeClock()
    enforcer = Enforcer(store, InMemoryPenaltyBox(), clock)
    engine = PolicyEngine([token_policy(10_000)])
    who = caller()
    # Nearly full: 9,000 of 10,000 used by earlier traffic.
    filler = await enforcer.admit(engine, who, ctx(who, 8_900, 200), None)
    assert filler.decision.allowed
    await enforcer.settle(filler.charges, Usage(8_800, 200, 9_000), None, estimated_prompt=8_900)

    # 50 at once, each reserving 100 + 50% of 100 = 150, each really using 130.
    async def one() -> tuple[bool, int]:
        admission = await enforcer.admit(engine, who, ctx(who, 100, 100), None)
        if not admission.decision.allowed:
            return False, 0
        await enforcer.settle(admission.charges, Usage(90, 40, 130), None, estimated_prompt=100)
        return True, 130

    results = await asyncio.gather(*(one() for _ in range(50)))
    admitted = [used for ok, used in results if ok]
    total = 9_000 + sum(admitted)
    assert 0 < len(admitted) < 50
    reservation = 150
    assert total <= 10_000 + reservation
    # Every refusal was deserved: once settled, a refused request is admitted exactly
    # when its reservation fits what is left.
    late = await enforcer.admit(engine, who, ctx(who, 100, 100), None)
    assert late.decision.allowed is (total + reservation <= 10_000)


async def test_early_end_keeps_the_prompt_estimate_as_fair_charge(store: CounterStore) -> None:
    clock = FakeClock()
    enforcer = Enforcer(store, InMemoryPenaltyBox(), clock)
    engine = PolicyEngine([token_policy(1_000)])
    who = caller()
    admission = await enforcer.admit(engine, who, ctx(who, 200, 400), None)
    assert admission.headers["x-ratelimit-remaining-tokens"] == str(1_000 - 400)
    await enforcer.settle(admission.charges, None, None, estimated_prompt=200)
    probe = await enforcer.admit(engine, who, ctx(who, 0, 0), None)
    # 200 kept from the first request; the probe reserved 0 (0 prompt, 0 output).
    assert probe.headers["x-ratelimit-remaining-tokens"] == "800"


async def test_shadow_counter_reports_but_never_blocks(store: CounterStore) -> None:
    enforcer = Enforcer(store, InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([rate_policy(1, mode="shadow")])
    who = caller()
    first = await enforcer.admit(engine, who, ctx(who, 1, 1), None)
    second = await enforcer.admit(engine, who, ctx(who, 1, 1), None)
    assert first.decision.allowed and first.decision.shadow == ()
    assert second.decision.allowed
    assert [v.policy_id for v in second.decision.shadow] == ["rl"]
    assert "x-ratelimit-limit-requests" not in second.headers  # shadow limits are not advertised


class DownStore(InMemoryCounterStore):
    async def check_and_add(self, ops, now):  # type: ignore[no-untyped-def,override]
        raise CounterStoreUnavailable("redis unavailable: connection refused")


@pytest.mark.parametrize(
    ("fail_mode", "allowed", "status"), [("open", True, None), ("closed", False, 503)]
)
async def test_store_unavailable_fails_open_or_closed_per_policy(
    fail_mode: str, allowed: bool, status: int | None
) -> None:
    enforcer = Enforcer(DownStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([rate_policy(5, config={"fail_mode": fail_mode})])
    who = caller()
    admission = await enforcer.admit(engine, who, ctx(who, 1, 1), None)
    assert admission.decision.allowed is allowed
    if status is not None:
        assert admission.decision.denial is not None
        assert admission.decision.denial.status == status
    else:
        assert admission.counters_unavailable
    assert enforcer.unavailable_events == 1


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (1.4, "1s"), (59, "59s"), (60, "1m0s"), (3723, "1h2m3s")]
)
def test_reset_duration_format(seconds: float, text: str) -> None:
    assert duration(seconds) == text
