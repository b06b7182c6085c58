"""Policy scope, order, shadow mode, and the two local policy types."""

from __future__ import annotations

import pytest

from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy import (
    ModelAllowlistConfig,
    PolicyDefinition,
    PolicyEngine,
    PreRequestContext,
    RequestSizeConfig,
    Scope,
)

CALLER = Identity(app_id="a1", org_id="o1", environment="dev", key_id="k")


def ctx(model: str = "gpt-4o-mini", size: int = 100) -> PreRequestContext:
    return PreRequestContext(
        request_size_bytes=size,
        estimated_tokens=10,
        model=model,
        org_id="o1",
        app_id="a1",
        environment="dev",
        provider="openai",
        stream=False,
        max_tokens=None,
    )


def allow(pid: str, *models: str, **kw: object) -> PolicyDefinition:
    return PolicyDefinition(
        id=pid,
        name=pid,
        type="model_allowlist",
        config=ModelAllowlistConfig(models=models),
        **kw,  # type: ignore[arg-type]
    )


def size(pid: str, max_bytes: int, **kw: object) -> PolicyDefinition:
    return PolicyDefinition(
        id=pid,
        name=pid,
        type="request_size",
        config=RequestSizeConfig(max_bytes=max_bytes),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("patterns", "model", "allowed"),
    [
        (("gpt-4o-mini",), "gpt-4o-mini", True),
        (("gpt-4o-mini",), "gpt-4o", False),
        (("gpt-4o*",), "gpt-4o-2024-08-06", True),
        (("gpt-4o*",), "gpt-4.1", False),
        (("claude-?-haiku",), "claude-3-haiku", True),
        (("gemini-[12].*",), "gemini-1.5-pro", True),
        (("gemini-[12].*",), "gemini-3.0", False),
        (("GPT-4O",), "gpt-4o", False),  # case-sensitive, like the providers
    ],
)
def test_model_allowlist_exact_and_glob(
    patterns: tuple[str, ...], model: str, allowed: bool
) -> None:
    engine = PolicyEngine([allow("p", *patterns)])
    decision = engine.pre_check(CALLER, ctx(model))
    assert decision.allowed is allowed
    if not allowed:
        assert decision.denial is not None
        assert (decision.denial.status, decision.denial.policy_id) == (403, "p")


@pytest.mark.parametrize(("limit", "observed", "allowed"), [(100, 100, True), (100, 101, False)])
def test_request_size_limit_is_inclusive(limit: int, observed: int, allowed: bool) -> None:
    engine = PolicyEngine([size("s", limit)])
    decision = engine.pre_check(CALLER, ctx(size=observed))
    assert decision.allowed is allowed
    assert engine.check_declared_size(CALLER, observed).allowed is allowed
    if not allowed:
        assert decision.denial is not None
        assert decision.denial.details["limit"] == limit
        assert decision.denial.details["observed"] == observed
        assert decision.denial.status == 413


@pytest.mark.parametrize(
    ("scope", "applies"),
    [
        (Scope(), True),
        (Scope(org_id="o1"), True),
        (Scope(org_id="o2"), False),
        (Scope(app_id="a1"), True),
        (Scope(app_id="a2"), False),
        (Scope(app_id="a1", environment="dev"), True),
        (Scope(app_id="a1", environment="prod"), False),
        (Scope(model_pattern="gpt-4o*"), True),
        (Scope(model_pattern="claude-*"), False),
    ],
)
def test_scope_selects_policies(scope: Scope, applies: bool) -> None:
    engine = PolicyEngine([size("s", 1, scope=scope)])
    assert engine.pre_check(CALLER, ctx()).allowed is not applies


def test_disabled_policy_is_ignored() -> None:
    assert PolicyEngine([size("s", 1, enabled=False)]).pre_check(CALLER, ctx()).allowed


def test_shadow_violations_are_reported_but_never_block() -> None:
    engine = PolicyEngine([size("s1", 1, mode="shadow"), allow("a1", "x", mode="shadow")])
    decision = engine.pre_check(CALLER, ctx())
    assert decision.allowed
    assert [v.policy_id for v in decision.shadow] == ["a1", "s1"]
    assert all(v.shadow for v in decision.shadow)


def test_lowest_priority_number_decides_first_then_id() -> None:
    engine = PolicyEngine(
        [
            size("z-size", 1, priority=10),
            allow("b-allow", "x", priority=5),
            allow("a-allow", "x", priority=5),
        ]
    )
    decision = engine.pre_check(CALLER, ctx())
    assert decision.denial is not None and decision.denial.policy_id == "a-allow"


def test_shadow_before_the_denial_is_kept() -> None:
    engine = PolicyEngine([size("s", 1, mode="shadow", priority=1), allow("a", "x", priority=2)])
    decision = engine.pre_check(CALLER, ctx())
    assert decision.denial is not None and decision.denial.policy_id == "a"
    assert [v.policy_id for v in decision.shadow] == ["s"]
