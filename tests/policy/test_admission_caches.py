"""What the engine and the counter policies now compute once (issue 13, admission in
memory mode) answers exactly as when it was computed per request."""

from __future__ import annotations

import pytest

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy import PolicyDefinition, PolicyEngine, PreRequestContext, Scope
from policy_sidecar.policy import engine as engine_module
from policy_sidecar.policy.definition import (
    CustomCelConfig,
    RateLimitConfig,
    RequestSizeConfig,
    TokenLimitConfig,
)
from policy_sidecar.policy.limits import (
    SHADOW_LIMIT,
    CounterPolicy,
    RateLimitPolicy,
    TokenLimitPolicy,
)
from policy_sidecar.providers.base import Usage
from policy_sidecar.tokens._encodings import encoding_for_model

WHO = Identity(app_id="a", org_id="o", environment="dev", key_id="k")
ANY = Scope()
OTHER = Identity(app_id="b", org_id="o", environment="dev", key_id="k2")
PRICED = ModelDeployment(
    name="m", provider="openai", upstream_model="m", input_price_per_mtok=0.15,
    output_price_per_mtok=0.6,
)  # fmt: skip


def ctx(
    model: str | None, *, estimated: int = 10, max_tokens: int | None = None
) -> PreRequestContext:
    return PreRequestContext(
        request_size_bytes=100,
        estimated_tokens=estimated,
        model=model,  # type: ignore[arg-type]
        org_id="o",
        app_id="a",
        environment="dev",
        provider="openai",
        stream=False,
        max_tokens=max_tokens,
    )


def rate(pid: str, scope: Scope = ANY, **kw: object) -> PolicyDefinition:
    return PolicyDefinition(
        id=pid, name=pid, type="rate_limit", config=RateLimitConfig(requests=5, window="1m"),
        scope=scope, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def size(pid: str, scope: Scope = ANY) -> PolicyDefinition:
    return PolicyDefinition(
        id=pid, name=pid, type="request_size", config=RequestSizeConfig(max_bytes=1), scope=scope
    )


def engine() -> PolicyEngine:
    return PolicyEngine(
        [
            rate("r-all"),
            rate("r-gpt", Scope(model_pattern="gpt-*")),
            rate("r-claude", Scope(model_pattern="claude-*")),
            rate("r-b", Scope(app_id="b")),
            size("s-gpt", Scope(model_pattern="gpt-*")),
        ]
    )


@pytest.mark.parametrize(
    ("model", "counters", "denied_by"),
    [
        ("gpt-4o", ["r-all", "r-gpt"], "s-gpt"),
        ("claude-haiku", ["r-all", "r-claude"], None),
        (None, ["r-all"], None),
        ("", ["r-all"], None),
    ],
)
def test_policies_per_model_asked_twice(
    model: str | None, counters: list[str], denied_by: str | None
) -> None:
    e = engine()
    for _ in range(2):  # the second answer comes from the per-model table
        assert [p.definition.id for p in e.counters(WHO, model)] == counters  # type: ignore[arg-type]
        decision = e.pre_check(WHO, ctx(model))
        assert (decision.denial.policy_id if decision.denial else None) == denied_by
    # another caller of the same organisation has its own answer for the same model
    assert [p.definition.id for p in e.counters(OTHER, "claude-haiku")] == [
        "r-all",
        "r-b",
        "r-claude",
    ]


def test_per_model_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "_MAX_BY_MODEL", 8)
    e = engine()
    for i in range(50):
        assert [p.definition.id for p in e.counters(WHO, f"gpt-{i}")] == ["r-all", "r-gpt"]
        assert len(e._by_model) <= 8
    assert [p.definition.id for p in e.counters(WHO, "claude-x")] == ["r-all", "r-claude"]


def test_has_penalties_per_caller() -> None:
    def cel(pid: str, scope: Scope, penalty: int | None) -> PolicyDefinition:
        config = CustomCelConfig(post_check_expression="true", penalty_seconds=penalty)
        return PolicyDefinition(id=pid, name=pid, type="custom_cel", config=config, scope=scope)

    e = PolicyEngine([cel("c-a", Scope(app_id="a"), 30), cel("c-b", Scope(app_id="b"), None)])
    assert e.has_penalties(WHO)
    assert e.has_penalties(WHO)
    assert not e.has_penalties(OTHER)
    assert not PolicyEngine([]).has_penalties(WHO)


@pytest.mark.parametrize("count", ["total", "prompt", "completion", "cost_usd"])
@pytest.mark.parametrize("estimated", [0, 1, 37, 10**6])
@pytest.mark.parametrize("max_tokens", [None, 0, 64, 10**6])
@pytest.mark.parametrize("deployment", [None, PRICED])
@pytest.mark.parametrize("mode", ["enforce", "shadow"])
def test_token_amount_is_the_actual_usage_of_the_reservation(
    count: str,
    estimated: int,
    max_tokens: int | None,
    deployment: ModelDeployment | None,
    mode: str,
) -> None:
    config = TokenLimitConfig.model_validate(
        {
            "window": "1h",
            "count": count,
            **({"limit_usd": 5.0} if count == "cost_usd" else {"limit": 900}),
        }
    )
    policy = TokenLimitPolicy(
        PolicyDefinition(id="t", name="t", type="token_limit", config=config, mode=mode), config
    )
    c = ctx("m", estimated=estimated, max_tokens=max_tokens)
    output = policy.reserved_output(c)
    expected = policy.actual(
        Usage(prompt_tokens=estimated, completion_tokens=output, total_tokens=estimated + output),
        deployment,
    )
    assert policy.amount(c, deployment) == expected
    op = policy.op(WHO, c, deployment)
    assert op.amount == expected
    assert op.limit == (SHADOW_LIMIT if mode == "shadow" else policy.limit)


@pytest.mark.parametrize(
    "model",
    [None, "", "gpt-4o-mini", "gpt-4", "ft:gpt-4o-mini:org::id", "claude-x", "text-davinci-003"],
)
def test_encoding_for_model_remembered_is_the_same(model: str | None) -> None:
    first = encoding_for_model(model)
    assert encoding_for_model(model) == first
    assert encoding_for_model.__wrapped__(model) == first  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", ["org", "app", "app_env", "api_key", "app_model"])
@pytest.mark.parametrize("mode", ["enforce", "shadow"])
def test_rate_op_remembered_is_the_one_built(key: str, mode: str) -> None:
    config = RateLimitConfig.model_validate({"requests": 5, "window": "1m", "key": key})
    definition = PolicyDefinition(id="r", name="r", type="rate_limit", config=config, mode=mode)
    policy = RateLimitPolicy(definition, config)
    fresh = RateLimitPolicy(definition, config)
    callers = [WHO, OTHER, Identity(app_id="a", org_id="o", environment="dev", key_id="k3")]
    for _ in range(2):
        for who in callers:
            for model in ("m", "gpt-4o", ""):
                op = policy.op(who, ctx(model), None)
                assert op == CounterPolicy.op(fresh, who, ctx(model), None)
                assert op.amount == 1
                assert op.key == fresh.key(who, model)
