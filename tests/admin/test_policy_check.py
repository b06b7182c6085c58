"""TestPolicy's offline evaluation of counter policies reports the same reset and retry
times as a real check of a counter holding the same usage in its current bucket."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from policy_sidecar.admin.policy_check import evaluate
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy import PolicyDefinition, PolicyEngine, PreRequestContext
from policy_sidecar.policy.definition import RateLimitConfig, Scope

NOW = datetime(2026, 11, 30, 0, 18, tzinfo=UTC).timestamp()
WHO = Identity(app_id="a", org_id="o", environment="dev", key_id="k")
PRE = PreRequestContext(
    request_size_bytes=100,
    estimated_tokens=10,
    model="gpt-4o-mini",
    org_id="o",
    app_id="a",
    environment="dev",
    provider="openai",
    stream=False,
    max_tokens=10,
)


def _rate(window: str) -> PolicyDefinition:
    config = RateLimitConfig.model_validate({"requests": 3, "window": window})
    return PolicyDefinition(id="rl", name="rl", type="rate_limit", config=config)


def test_a_month_window_resets_at_the_start_of_the_next_month() -> None:
    outcome = evaluate(_rate("month"), PRE, None, counter_used=3, now=NOW)
    assert outcome.violation is not None
    assert outcome.violation.details["resets_at"] == "2026-12-01T00:00:00+00:00"
    assert outcome.violation.details["retry_after_seconds"] == (24 * 60 - 18) * 60


@pytest.mark.parametrize("window", ["30s", "1m", "1h", "1d", "month"])
async def test_the_dry_run_reports_what_a_real_check_reports(window: str) -> None:
    definition = _rate(window)
    engine = PolicyEngine([definition])
    enforcer = Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), lambda: NOW)
    for _ in range(3):
        assert (await enforcer.admit(engine, WHO, PRE, None)).decision.allowed
    real = (await enforcer.admit(engine, WHO, PRE, None)).decision.denial
    dry = evaluate(definition, PRE, None, counter_used=3, now=NOW).violation
    assert real is not None and dry is not None
    for field in ("resets_at", "retry_after_seconds", "limit", "observed"):
        assert dry.details[field] == real.details[field], field


def test_the_dry_run_asks_the_engine_which_policies_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One scope matcher: what the engine says applies is what the dry run says."""
    asked: list[tuple[Identity, str | None]] = []

    def covers(self: PolicyEngine, identity: Identity, model: str | None = None) -> tuple[str, ...]:
        asked.append((identity, model))
        return ()

    monkeypatch.setattr(PolicyEngine, "covers", covers)
    outcome = evaluate(_rate("1m"), PRE, None, counter_used=3, now=NOW)
    assert not outcome.applies
    assert outcome.reason == "the policy's scope does not cover this org/app/environment"
    assert asked == [(Identity("a", "o", "dev", ""), None)]


def test_the_engine_names_the_policies_covering_a_caller_and_model() -> None:
    scoped = replace(_rate("1m"), id="mini", scope=Scope(app_id="a", model_pattern="gpt-4o-*"))
    engine = PolicyEngine([_rate("1m"), scoped])
    assert engine.covers(WHO) == ("mini", "rl")
    assert engine.covers(WHO, "gpt-4o-mini") == ("mini", "rl")
    assert engine.covers(WHO, "other") == ("rl",)
    elsewhere = Identity(app_id="b", org_id="o", environment="dev", key_id="k")
    assert engine.covers(elsewhere, "gpt-4o-mini") == ("rl",)
