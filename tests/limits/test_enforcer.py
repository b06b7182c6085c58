"""The enforcer over real counter stores: reservations under concurrency, settling,
fail-open and fail-closed when the store is unreachable, shadow counters."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import CounterStoreUnavailable
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Enforcer, duration
from policy_sidecar.limits.penalties import InMemoryPenaltyBox, PenaltyBox, RedisPenaltyBox
from policy_sidecar.policy import PolicyDefinition, PolicyEngine, PreRequestContext
from policy_sidecar.policy.context import PostRequestContext
from policy_sidecar.policy.definition import (
    CustomCelConfig,
    ModelAllowlistConfig,
    RateLimitConfig,
    TokenLimitConfig,
)
from policy_sidecar.providers import Usage
from tests.conftest import FakeClock

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield InMemoryCounterStore()
        return
    # Patient timeouts: on a loaded machine the hot-path 0.25 s connect timeout would
    # fail open, and the test would measure the load instead of the window.
    redis_store = RedisCounterStore.from_url(REDIS_URL, socket_timeout=5.0, connect_timeout=5.0)
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


async def test_a_request_refused_by_any_limit_counts_against_none(store: CounterStore) -> None:
    """A rate limit counts admitted requests: one a token limit refuses (checked in the
    same call) is not counted, nor is one a local policy refuses first."""
    enforcer = Enforcer(store, InMemoryPenaltyBox(), FakeClock())
    allow_mini = PolicyDefinition(
        id="mini", name="mini", type="model_allowlist", config=ModelAllowlistConfig(models=("x",))
    )
    engine = PolicyEngine([rate_policy(2), token_policy(1_000)])
    refusing = PolicyEngine([rate_policy(2), token_policy(1_000), allow_mini])
    who = caller()
    for _ in range(3):
        too_big = await enforcer.admit(engine, who, ctx(who, 900, 400), None)
        assert too_big.decision.denial is not None
        assert too_big.decision.denial.policy_id == "tok"
        local = await enforcer.admit(refusing, who, ctx(who, 1, 1), None)
        assert local.decision.denial is not None and local.decision.denial.policy_id == "mini"
    admitted = [await enforcer.admit(engine, who, ctx(who, 1, 1), None) for _ in range(3)]
    assert [a.decision.allowed for a in admitted] == [True, True, False]
    denial = admitted[2].decision.denial
    assert denial is not None and denial.policy_id == "rl"


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


async def test_a_request_bigger_than_the_whole_limit_is_a_400_without_retry_after(
    store: CounterStore,
) -> None:
    """Waiting never helps a request that alone exceeds the limit: no Retry-After (an SDK
    would retry it in vain), a 400 saying what to change; the window is left untouched."""
    enforcer = Enforcer(store, InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([token_policy(1_000)])
    who = caller()
    # A 1,100-token prompt: more than the whole hourly limit before any output.
    denial = (await enforcer.admit(engine, who, ctx(who, 1_100, 0), None)).decision.denial
    assert denial is not None
    assert (denial.status, denial.code) == (400, "request_exceeds_limit")
    assert "retry_after_seconds" not in denial.details
    assert (denial.details["limit"], denial.details["observed"]) == (1_000, 1_100)
    assert "needs 1100 total tokens" in denial.message and "lower max_tokens" in denial.message
    # One that fits the limit but not what is left of the window still waits: a 429.
    fits = await enforcer.admit(engine, who, ctx(who, 600, 0), None)
    assert fits.decision.allowed
    late = (await enforcer.admit(engine, who, ctx(who, 600, 0), None)).decision.denial
    assert late is not None and (late.status, late.code) == (429, "token_limit_exceeded")
    assert late.details["retry_after_seconds"] >= 1


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


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def penalty_box(request: pytest.FixtureRequest) -> AsyncIterator[PenaltyBox]:
    if request.param == "memory":
        yield InMemoryPenaltyBox()
        return
    client = Redis.from_url(REDIS_URL)
    yield RedisPenaltyBox(client)
    await client.aclose()


async def test_a_penalty_denial_names_the_post_check_policy_that_imposed_it(
    penalty_box: PenaltyBox,
) -> None:
    clock = FakeClock()
    enforcer = Enforcer(InMemoryCounterStore(), penalty_box, clock)
    short = CustomCelConfig.model_validate(
        {"post_check_expression": "total_tokens < 10", "penalty_seconds": 30}
    )
    long = CustomCelConfig.model_validate(
        {"post_check_expression": "total_tokens < 20", "penalty_seconds": 60}
    )
    engine = PolicyEngine(
        [
            PolicyDefinition(id="cel-short", name="short answers", type="custom_cel", config=short),
            PolicyDefinition(id="cel-long", name="long answers", type="custom_cel", config=long),
        ]
    )
    who = caller()
    request = ctx(who, 5, 10)
    post = PostRequestContext(
        pre=request,
        prompt_tokens=5,
        completion_tokens=95,
        total_tokens=100,
        cached_tokens=0,
        reasoning_tokens=0,
        latency_ms=10,
        response_size_bytes=100,
        status_code=200,
        cost_usd=None,
    )
    assert len(await enforcer.post_check(engine, who, post)) == 2

    denial = (await enforcer.admit(engine, who, request, None)).decision.denial
    assert denial is not None
    assert (denial.status, denial.code) == (429, "policy_penalty")
    # The longest penalty wins, and the denial names its policy (not "penalty").
    assert denial.policy_id == "cel-long"
    assert denial.details["policy_id"] == "cel-long"
    assert denial.details["policy_name"] == "long answers"
    assert denial.details["retry_after_seconds"] == 60
    assert "long answers" in denial.message

    clock.advance(61)
    assert (await enforcer.admit(engine, who, request, None)).decision.allowed
