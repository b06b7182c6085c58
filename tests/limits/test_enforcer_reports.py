"""What the enforcer reports, to the caller and to the operator: the exact denial of a
failed-closed check and of a penalty, the facts of failed store calls and their log
lines, settling without usage, which post-check violations penalise, and the rate
headers in the corner cases (a full window, a denial, a shadow or cost limit first)."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import replace

import pytest

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.values import CounterStoreUnavailable, Window, WindowUnit
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Charge, Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox, Penalty, penalty_key
from policy_sidecar.policy import PolicyDefinition, PolicyEngine, PreRequestContext
from policy_sidecar.policy.context import PostRequestContext
from policy_sidecar.policy.decision import Violation
from policy_sidecar.policy.definition import (
    CustomCelConfig,
    RateLimitConfig,
    Scope,
    TokenLimitConfig,
)
from policy_sidecar.providers import Usage
from tests.conftest import FakeClock


def caller() -> Identity:
    return Identity(app_id="a", org_id=f"o-{uuid.uuid4().hex[:8]}", environment="dev", key_id="k")


def ctx(identity: Identity, estimated: int = 1, max_tokens: int | None = 1) -> PreRequestContext:
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


def rate(pid: str, requests: int, window: str = "1m", **kw: object) -> PolicyDefinition:
    mode = str(kw.pop("mode", "enforce"))
    config = RateLimitConfig.model_validate({"requests": requests, "window": window, **kw})
    return PolicyDefinition(id=pid, name=f"{pid} name", type="rate_limit", config=config, mode=mode)  # type: ignore[arg-type]


def tokens(pid: str, **kw: object) -> PolicyDefinition:
    config = TokenLimitConfig.model_validate({"window": "1h", **kw})
    return PolicyDefinition(id=pid, name=pid, type="token_limit", config=config)


def post_check(pid: str, penalty: int | None, mode: str = "enforce") -> PolicyDefinition:
    config = CustomCelConfig.model_validate(
        {"post_check_expression": "total_tokens < 10", "penalty_seconds": penalty}
    )
    return PolicyDefinition(id=pid, name=pid, type="custom_cel", config=config, mode=mode)  # type: ignore[arg-type]


def finished(request: PreRequestContext) -> PostRequestContext:
    return PostRequestContext(
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


class DownStore(InMemoryCounterStore):
    async def check_and_add(self, ops, now):  # type: ignore[no-untyped-def]
        raise CounterStoreUnavailable("redis unavailable: refused")

    async def adjust(self, adjustments, now):  # type: ignore[no-untyped-def]
        raise CounterStoreUnavailable("redis unavailable: refused")


class DownPenalties(InMemoryPenaltyBox):
    async def impose(self, key: str, penalty: Penalty, now: float) -> None:
        raise CounterStoreUnavailable("redis unavailable: refused")


# --- failed store calls: the denial, the facts, the log ----------------------------


async def test_fail_closed_denial_in_full(caplog: pytest.LogCaptureFixture) -> None:
    facts: list[str] = []
    gate = Enforcer(DownStore(), InMemoryPenaltyBox(), FakeClock(), store_errors=facts.append)
    engine = PolicyEngine([rate("rl", 5, fail_mode="closed")])
    who = caller()
    with caplog.at_level(logging.WARNING, logger="policy_sidecar.limits.enforcer"):
        first = await gate.admit(engine, who, ctx(who), None)
        await gate.admit(engine, who, ctx(who), None)
    assert first.decision.denial == Violation(
        policy_id="rl",
        policy_name="rl name",
        policy_type="rate_limit",
        shadow=False,
        status=503,
        code="limits_unavailable",
        message="limits cannot be checked right now (policy 'rl name' fails closed)",
        details={"policy_id": "rl", "policy_name": "rl name"},
    )
    assert facts == ["check", "check"]
    assert gate.unavailable_events == 2
    assert caplog.records[0].getMessage() == (
        "counter store unavailable; failing closed for policy rl: redis unavailable: refused"
    )


async def test_fail_open_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    gate = Enforcer(DownStore(), InMemoryPenaltyBox(), FakeClock())
    who = caller()
    with caplog.at_level(logging.WARNING, logger="policy_sidecar.limits.enforcer"):
        await gate.admit(PolicyEngine([rate("rl", 5)]), who, ctx(who), None)
    assert [r.getMessage() for r in caplog.records] == [
        "counter store unavailable; failing open: redis unavailable: refused"
    ]


async def test_a_failed_settle_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    facts: list[str] = []
    store = InMemoryCounterStore()
    gate = Enforcer(store, InMemoryPenaltyBox(), FakeClock(), store_errors=facts.append)
    who = caller()
    admission = await gate.admit(PolicyEngine([tokens("tok", limit=1000)]), who, ctx(who), None)
    gate._counters = DownStore()
    with caplog.at_level(logging.WARNING, logger="policy_sidecar.limits.enforcer"):
        await gate.settle(admission.charges, None, None, estimated_prompt=0)
    assert facts == ["settle"]
    assert [r.getMessage() for r in caplog.records] == [
        "could not settle 1 token reservations: redis unavailable: refused"
    ]


async def test_a_failed_penalty_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    facts: list[str] = []
    gate = Enforcer(InMemoryCounterStore(), DownPenalties(), FakeClock(), store_errors=facts.append)
    who = caller()
    with caplog.at_level(logging.WARNING, logger="policy_sidecar.limits.enforcer"):
        await gate.post_check(PolicyEngine([post_check("p", 30)]), who, finished(ctx(who)))
    assert facts == ["penalty"]
    assert [r.getMessage() for r in caplog.records] == [
        "could not set a post-check penalty: redis unavailable: refused"
    ]


# --- penalties -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("penalty", "policy_id", "name", "wait"),
    [
        (Penalty(0.5, "cel-1", "short answers"), "cel-1", "short answers", 1),
        # Written by a version that stored only the end: named generically.
        (Penalty(41.2, "", ""), "penalty", "post-check penalty", 42),
    ],
)
async def test_a_penalty_denial_in_full(
    penalty: Penalty, policy_id: str, name: str, wait: int
) -> None:
    clock = FakeClock()
    box = InMemoryPenaltyBox()
    who = caller()
    key = penalty_key(who.org_id, who.app_id, who.environment)
    ends = Penalty(clock.now + penalty.until, penalty.policy_id, penalty.policy_name)
    await box.impose(key, ends, clock.now)
    gate = Enforcer(InMemoryCounterStore(), box, clock)
    denial = (await gate.admit(PolicyEngine([post_check("x", 5)]), who, ctx(who), None)).decision
    assert denial.denial == Violation(
        policy_id=policy_id,
        policy_name=name,
        policy_type="custom_cel",
        shadow=False,
        status=429,
        code="policy_penalty",
        message=f"requests are refused for {wait}s after a violation of post-check policy '{name}'",
        details={"policy_id": policy_id, "policy_name": name, "retry_after_seconds": wait},
    )


@pytest.mark.parametrize(
    "policies",
    [
        [post_check("no-penalty", None)],  # a violation without penalty_seconds
        [post_check("shadow", 30, mode="shadow")],  # a shadow violation
    ],
)
async def test_violations_that_do_not_penalise(policies: list[PolicyDefinition]) -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine(policies)
    who = caller()
    assert len(await gate.post_check(engine, who, finished(ctx(who)))) == 1
    assert (await gate.admit(engine, who, ctx(who), None)).decision.allowed


async def test_two_penalties_of_equal_length() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([post_check("p1", 30), post_check("p2", 30)])
    who = caller()
    assert len(await gate.post_check(engine, who, finished(ctx(who)))) == 2
    denial = (await gate.admit(engine, who, ctx(who), None)).decision.denial
    assert denial is not None and denial.details["retry_after_seconds"] == 30


# --- settling without usage ------------------------------------------------------------


@pytest.mark.parametrize("count", ["total", "prompt"])
async def test_without_usage_the_estimated_prompt_is_charged(count: str) -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([tokens("tok", limit=1000, count=count)])
    who = caller()
    admission = await gate.admit(engine, who, ctx(who, 300, 400), None)
    await gate.settle(admission.charges, None, None, estimated_prompt=300)
    probe = await gate.admit(engine, who, ctx(who, 0, 0), None)
    assert probe.headers["x-ratelimit-remaining-tokens"] == "700"


# --- rate headers --------------------------------------------------------------------


async def test_a_full_window_shows_zero_remaining_and_a_reset_within_it() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    who = caller()
    headers = (await gate.admit(PolicyEngine([rate("rl", 1)]), who, ctx(who), None)).headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    reset = re.fullmatch(r"(?:(\d+)m)?(\d+)s", headers["x-ratelimit-reset-requests"])
    assert reset is not None
    # A sliding minute clears within two (the request leaves the previous bucket).
    assert 0 < int(reset.group(1) or 0) * 60 + int(reset.group(2)) <= 120


async def test_a_denial_carries_the_headers_names_the_denying_limit_and_keeps_shadow() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([rate("loose", 10), rate("strict", 2), rate("watch", 1, mode="shadow")])
    who = caller()
    for _ in range(2):
        assert (await gate.admit(engine, who, ctx(who), None)).decision.allowed
    second = await gate.admit(engine, who, ctx(who), None)
    assert second.decision.denial is not None
    assert second.decision.denial.policy_id == "strict"
    assert [v.policy_id for v in second.decision.shadow] == ["watch"]
    assert second.headers["x-ratelimit-limit-requests"] == "2"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"


async def test_a_shadow_or_cost_limit_listed_first_does_not_hide_the_others() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine(
        [
            rate("watch", 1, mode="shadow"),
            tokens("budget", limit_usd=5.0, count="cost_usd"),
            rate("rl", 5),
            tokens("tok", limit=100),
        ]
    )
    who = caller()
    headers = (await gate.admit(engine, who, ctx(who, 1, 0), None)).headers
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-limit-tokens"] == "100"


async def test_on_a_tie_the_first_limit_is_shown() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([rate("a-minute", 5, "1m"), rate("b-day", 5, "1d")])
    who = caller()
    headers = (await gate.admit(engine, who, ctx(who), None)).headers
    assert headers["x-ratelimit-remaining-requests"] == "4"
    assert "h" not in headers["x-ratelimit-reset-requests"]  # the minute window's reset


def test_a_charge_survives_the_handover_between_filters() -> None:
    # The usage filter gets the charges back as strings (metadata): they must read back.
    charge = Charge("ps:{org:o}:app:a:tok", Window(WindowUnit.HOUR, 2), 1_800_000_000, 150, "total")
    assert Charge.from_list(charge.to_list()) == charge
    assert Charge.from_list([str(v) for v in charge.to_list()]) == charge
    as_floats = ["k", "month", "1.0", "1800000000.0", "150.0", "cost_usd"]
    assert Charge.from_list(as_floats) == Charge(
        "k", Window(WindowUnit.MONTH, 1), 1_800_000_000, 150, "cost_usd"
    )


# --- found by mutation testing ---------------------------------------------------------


async def test_a_one_second_penalty_is_imposed() -> None:
    clock = FakeClock()
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), clock)
    engine = PolicyEngine([post_check("p", 1)])
    who = caller()
    await gate.post_check(engine, who, finished(ctx(who)))
    assert not (await gate.admit(engine, who, ctx(who), None)).decision.allowed
    clock.advance(1)
    assert (await gate.admit(engine, who, ctx(who), None)).decision.allowed


async def test_a_shadow_limit_sorted_first_does_not_hide_the_headers() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([rate("a-watch", 1, mode="shadow"), rate("b-rl", 5)])
    who = caller()
    assert engine.counters(who, "gpt-4o-mini")[0].definition.id == "a-watch"
    headers = (await gate.admit(engine, who, ctx(who), None)).headers
    assert headers["x-ratelimit-limit-requests"] == "5"


async def test_without_counters_the_local_decision_stands() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    who = caller()
    admission = await gate.admit(PolicyEngine([]), who, ctx(who), None)
    assert admission.decision.allowed and admission.headers == {}


async def test_a_model_scoped_limit_applies_to_its_models_only() -> None:
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    scoped = replace(rate("rl", 1), scope=Scope(model_pattern="gpt-4o*"))
    engine = PolicyEngine([scoped])
    who = caller()
    assert (await gate.admit(engine, who, ctx(who), None)).decision.allowed
    assert not (await gate.admit(engine, who, ctx(who), None)).decision.allowed
    other = replace(ctx(who), model="claude-3-5-haiku")
    assert (await gate.admit(engine, who, other, None)).decision.allowed


async def test_a_cost_budget_reserves_and_settles_at_the_deployment_price() -> None:
    # $1 per million input and output tokens: 1 token = 1 micro-dollar.
    model = ModelDeployment(
        "gpt-4o-mini", "openai", "gpt-4o-mini", input_price_per_mtok=1.0, output_price_per_mtok=1.0
    )
    gate = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([tokens("budget", limit_usd=0.001, count="cost_usd")])
    who = caller()
    admission = await gate.admit(engine, who, ctx(who, 100, 200), model)
    assert [c.amount for c in admission.charges] == [200]  # 100 prompt + 100 reserved
    await gate.settle(admission.charges, Usage(100, 500, 600), model, estimated_prompt=100)
    # 600 of 1,000 micro-dollars spent: a request reserving 500 no longer fits.
    assert not (await gate.admit(engine, who, ctx(who, 300, 400), model)).decision.allowed
    assert (await gate.admit(engine, who, ctx(who, 200, 400), model)).decision.allowed
