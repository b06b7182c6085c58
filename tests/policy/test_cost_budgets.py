"""Cost budgets (token_limit with count: cost_usd) are dollars, not tokens: they never
show as, or compete with, x-ratelimit-*-tokens, and every message prints USD the same
way (`$0.00005`, no exponent)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from policy_sidecar.admin.policy_check import evaluate
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.money import format_usd
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy import PolicyDefinition, PolicyEngine, PreRequestContext
from policy_sidecar.policy.definition import TokenLimitConfig
from tests.conftest import FakeClock

WHO = Identity(app_id="a", org_id="o", environment="dev", key_id="k")
# $1 per million tokens in and out: one token costs one micro-dollar.
MODEL = ModelDeployment(
    name="m", provider="openai", upstream_model="m", input_price_per_mtok=1.0,
    output_price_per_mtok=1.0,
)  # fmt: skip


def _ctx(estimated: int) -> PreRequestContext:
    return PreRequestContext(
        request_size_bytes=100,
        estimated_tokens=estimated,
        model="m",
        org_id="o",
        app_id="a",
        environment="dev",
        provider="openai",
        stream=False,
        max_tokens=0,
    )


def _limit(pid: str, **config: object) -> PolicyDefinition:
    parsed = TokenLimitConfig.model_validate({"window": "1h", "default_max_output": 0, **config})
    return PolicyDefinition(id=pid, name=pid, type="token_limit", config=parsed)


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (5e-05, "$0.00005"),
        (25, "$25"),
        (25.0, "$25"),
        (0.001, "$0.001"),
        (1e-9, "$0.000000001"),
        (Decimal("10.50"), "$10.5"),
        (0, "$0"),
    ],
)
def test_format_usd(amount: float | Decimal, text: str) -> None:
    assert format_usd(amount) == text


async def test_a_cost_budget_is_not_advertised_as_tokens() -> None:
    enforcer = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    # The budget ($0.00005 = 50 micro-USD) has less "remaining" than the token limit,
    # but it must neither appear in micro-USD nor be picked as the tightest token limit.
    engine = PolicyEngine(
        [_limit("budget", count="cost_usd", limit_usd=0.00005), _limit("tokens", limit=1000)]
    )
    admission = await enforcer.admit(engine, WHO, _ctx(10), MODEL)
    assert admission.decision.allowed
    assert admission.headers["x-ratelimit-limit-tokens"] == "1000"
    assert admission.headers["x-ratelimit-remaining-tokens"] == "990"
    assert not any("cost" in name or "usd" in name for name in admission.headers)

    only_budget = PolicyEngine([_limit("budget2", count="cost_usd", limit_usd=0.00005)])
    alone = await enforcer.admit(only_budget, WHO, _ctx(10), MODEL)
    assert alone.headers == {}


async def test_cost_denials_and_dry_runs_print_dollars() -> None:
    enforcer = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())
    budget = _limit("budget", count="cost_usd", limit_usd=0.00005)
    assert (await enforcer.admit(PolicyEngine([budget]), WHO, _ctx(30), MODEL)).decision.allowed
    denial = (await enforcer.admit(PolicyEngine([budget]), WHO, _ctx(30), MODEL)).decision.denial
    assert denial is not None
    assert "limit $0.00005 per 1h, would reach $0.00006" in denial.message
    assert "e-0" not in denial.message
    # A request that alone costs more than the budget: a 400 in dollars, no retry.
    alone = (await enforcer.admit(PolicyEngine([budget]), WHO, _ctx(60), MODEL)).decision.denial
    assert alone is not None and alone.status == 400
    assert "needs $0.00006, more than the token limit of $0.00005 per 1h" in alone.message

    dry = evaluate(budget, _ctx(60), None, deployment=MODEL, counter_used=10, now=0.0)
    assert "counts $0.00006 toward a limit of $0.00005 per 1h with $0.00001 already" in dry.reason
    assert "e-0" not in dry.reason
