"""Admission details the broad enforcer tests leave open: the output-reserve cap, limits
scoped wider than one app, shadow policies when the store is down, and which of several
limits the rate headers advertise."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import pytest

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.values import CounterStoreUnavailable
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy import PolicyDefinition, PolicyEngine, PreRequestContext
from policy_sidecar.policy.definition import RateLimitConfig, TokenLimitConfig
from tests.conftest import FakeClock


def caller(app: str = "a") -> Identity:
    return Identity(app_id=app, org_id=f"o-{uuid.uuid4().hex[:8]}", environment="dev", key_id="k")


def ctx(identity: Identity, estimated: int, max_tokens: int | None) -> PreRequestContext:
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


def rate(pid: str, requests: int, mode: str = "enforce", **config: object) -> PolicyDefinition:
    parsed = RateLimitConfig.model_validate({"requests": requests, "window": "1m", **config})
    return PolicyDefinition(id=pid, name=pid, type="rate_limit", config=parsed, mode=mode)  # type: ignore[arg-type]


def tokens(pid: str, limit: int, **config: object) -> PolicyDefinition:
    parsed = TokenLimitConfig.model_validate({"limit": limit, "window": "1h", **config})
    return PolicyDefinition(id=pid, name=pid, type="token_limit", config=parsed)


def enforcer() -> Enforcer:
    return Enforcer(InMemoryCounterStore(), InMemoryPenaltyBox(), FakeClock())


# --- the output reservation -------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "max_tokens", "reserved"),
    [
        ({}, 100_000, 4096),  # the default cap bounds a huge max_tokens
        ({"output_reserve_cap": 1_000}, 100_000, 1_000),
        ({"output_reserve_cap": 1_000}, 1_000, 500),  # under the cap: the ratio applies
        ({"output_reserve_ratio": 1.0, "output_reserve_cap": 0}, 500, 0),
        ({}, None, 128),  # no max_tokens: half of default_max_output (256)
        ({"default_max_output": 1_000, "output_reserve_cap": 300}, None, 300),
    ],
)
async def test_the_output_reservation_is_capped(
    config: dict[str, object], max_tokens: int | None, reserved: int
) -> None:
    who = caller()
    engine = PolicyEngine([tokens("tok", 1_000_000, **config)])
    admission = await enforcer().admit(engine, who, ctx(who, 50, max_tokens), None)
    assert admission.decision.allowed
    assert [c.amount for c in admission.charges] == [50 + reserved]
    assert admission.headers["x-ratelimit-remaining-tokens"] == str(1_000_000 - 50 - reserved)


async def test_a_capped_reservation_admits_a_request_the_uncapped_one_would_not() -> None:
    # 10,000 tokens; max_tokens 100,000 would reserve 50,000 without the cap.
    who = caller()
    engine = PolicyEngine([tokens("tok", 10_000, output_reserve_cap=2_000)])
    assert (await enforcer().admit(engine, who, ctx(who, 100, 100_000), None)).decision.allowed


# --- limits wider than one app share their counter ---------------------------------


@pytest.mark.parametrize(
    ("scope", "other", "shared"),
    [
        ("org", {"app_id": "b", "environment": "prod", "key_id": "k2"}, True),
        ("app", {"environment": "prod", "key_id": "k2"}, True),
        ("app", {"app_id": "b"}, False),
        ("app_env", {"key_id": "k2"}, True),
        ("app_env", {"environment": "prod"}, False),
        ("api_key", {"app_id": "b", "environment": "prod"}, True),
        ("api_key", {"key_id": "k2"}, False),
    ],
)
async def test_a_limit_counts_across_the_callers_of_its_scope(
    scope: str, other: dict[str, Any], shared: bool
) -> None:
    gate = enforcer()
    engine = PolicyEngine([rate("rl", 1, key=scope)])
    first = caller()
    second = replace(first, **other)
    assert (await gate.admit(engine, first, ctx(first, 1, 1), None)).decision.allowed
    admitted = (await gate.admit(engine, second, ctx(second, 1, 1), None)).decision.allowed
    assert admitted is not shared


async def test_an_app_model_limit_counts_each_model_apart() -> None:
    gate = enforcer()
    engine = PolicyEngine([rate("rl", 1, key="app_model")])
    who = caller()
    other_model = replace(ctx(who, 1, 1), model="gpt-4o")
    assert (await gate.admit(engine, who, ctx(who, 1, 1), None)).decision.allowed
    assert (await gate.admit(engine, who, other_model, None)).decision.allowed
    assert not (await gate.admit(engine, who, ctx(who, 1, 1), None)).decision.allowed


# --- shadow policies when the counter store is down -------------------------------


class DownStore(InMemoryCounterStore):
    async def check_and_add(self, ops, now):  # type: ignore[no-untyped-def]
        raise CounterStoreUnavailable("redis unavailable: connection refused")


async def test_a_shadow_policy_never_fails_closed() -> None:
    # Shadow mode promises the request is never blocked, even with fail_mode closed.
    gate = Enforcer(DownStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine([rate("shadow-rl", 5, mode="shadow", fail_mode="closed")])
    who = caller()
    admission = await gate.admit(engine, who, ctx(who, 1, 1), None)
    assert admission.decision.allowed
    assert admission.counters_unavailable


async def test_fail_closed_names_the_enforced_policy_not_a_shadow_one() -> None:
    gate = Enforcer(DownStore(), InMemoryPenaltyBox(), FakeClock())
    engine = PolicyEngine(
        [
            rate("shadow-rl", 5, mode="shadow", fail_mode="closed"),
            rate("real-rl", 5, fail_mode="closed"),
        ]
    )
    who = caller()
    denial = (await gate.admit(engine, who, ctx(who, 1, 1), None)).decision.denial
    assert denial is not None
    assert (denial.status, denial.code, denial.policy_id) == (503, "limits_unavailable", "real-rl")


# --- rate headers advertise the tightest limit of each unit ------------------------


@pytest.mark.parametrize("tight_first", [True, False])
async def test_headers_show_the_limit_with_the_least_remaining(tight_first: bool) -> None:
    loose, tight = rate("loose", 10), rate("tight", 3)
    engine = PolicyEngine([tight, loose] if tight_first else [loose, tight])
    who = caller()
    headers = (await enforcer().admit(engine, who, ctx(who, 1, 1), None)).headers
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "2"


async def test_the_tightest_is_by_remaining_not_by_limit() -> None:
    # A per-app limit of 5 with 4 left beats an org limit of 100 with 1 left after the
    # org's other apps spent it.
    gate = enforcer()
    engine = PolicyEngine([rate("per-app", 5, key="app"), rate("per-org", 100, key="org")])
    who = caller()
    for app in range(98):
        other = replace(who, app_id=f"other-{app}")
        assert (await gate.admit(engine, other, ctx(other, 1, 1), None)).decision.allowed
    headers = (await gate.admit(engine, who, ctx(who, 1, 1), None)).headers
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "1"


async def test_each_unit_has_its_own_tightest_limit() -> None:
    engine = PolicyEngine(
        [
            rate("rl", 7),
            tokens("big", 100_000),
            tokens("small", 1_000),
            tokens("budget", 1, count="prompt", key="org"),
        ]
    )
    who = caller()
    admission = await enforcer().admit(engine, who, ctx(who, 0, 0), None)
    assert admission.decision.allowed
    headers = admission.headers
    assert headers["x-ratelimit-limit-requests"] == "7"
    assert headers["x-ratelimit-remaining-requests"] == "6"
    # "budget" has 1 left (0 reserved), "small" 1,000: the budget is the tightest.
    assert headers["x-ratelimit-limit-tokens"] == "1"
    assert headers["x-ratelimit-remaining-tokens"] == "1"
