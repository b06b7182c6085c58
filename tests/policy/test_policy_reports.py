"""What the policies report, in full (found by mutation testing: every field of a
denial, every CEL variable, the engines' own error texts, model-scoped post-checks)."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Any

import pytest

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.counters.values import CounterState, Window, WindowUnit
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy import (
    ModelAllowlistConfig,
    PolicyDefinition,
    PolicyEngine,
    PostRequestContext,
    PreRequestContext,
    RequestSizeConfig,
    Scope,
    Violation,
)
from policy_sidecar.policy.account_limits import account_policies
from policy_sidecar.policy.cel import (
    POST_VARIABLES,
    PRE_VARIABLES,
    CelCompileError,
    CelEvaluationError,
    EngineName,
    Phase,
    VarType,
    compile_expression,
    variables_for,
)
from policy_sidecar.policy.cel_engines import CelExprEngine, CelPythonEngine
from policy_sidecar.policy.cel_policy import CelPolicy
from policy_sidecar.policy.definition import (
    CustomCelConfig,
    RateLimitConfig,
    TokenLimitConfig,
    parse_window,
)
from policy_sidecar.policy.limits import RateLimitPolicy, TokenLimitPolicy, cost_micro_usd
from policy_sidecar.policy.local import ModelAllowlistPolicy, RequestSizePolicy, build_policy
from policy_sidecar.policy.source import StaticPolicySource
from policy_sidecar.providers.base import Usage

ENGINES: list[EngineName] = ["cel-expr", "cel-python"]
CALLER = Identity(app_id="a1", org_id="o1", environment="dev", key_id="k")

PRE = PreRequestContext(
    request_size_bytes=2048,
    estimated_tokens=1500,
    model="gpt-4o-mini",
    org_id="o1",
    app_id="a1",
    environment="dev",
    provider="openai",
    stream=True,
    max_tokens=512,
)
POST = PostRequestContext(
    pre=PRE,
    prompt_tokens=1400,
    completion_tokens=300,
    total_tokens=1700,
    cached_tokens=1024,
    reasoning_tokens=7,
    latency_ms=850,
    response_size_bytes=9000,
    status_code=201,
    cost_usd=0.0125,
)
# Each variable and the value a CEL literal gives it in PRE / POST above.
PRE_VALUES = {
    "request_size_bytes": "2048",
    "estimated_tokens": "1500",
    "model": '"gpt-4o-mini"',
    "org_id": '"o1"',
    "app_id": '"a1"',
    "environment": '"dev"',
    "provider": '"openai"',
    "stream": "true",
    "max_tokens": "512",
}
POST_VALUES = {
    "prompt_tokens": "1400",
    "completion_tokens": "300",
    "total_tokens": "1700",
    "cached_tokens": "1024",
    "reasoning_tokens": "7",
    "latency_ms": "850",
    "response_size_bytes": "9000",
    "status_code": "201",
    "cost_usd": "0.0125",
}


def cel(
    pid: str = "rule",
    *,
    pre: str | None = None,
    post: str | None = None,
    engine: EngineName = "cel-expr",
    mode: str = "enforce",
    **config: Any,
) -> CelPolicy:
    definition = PolicyDefinition(
        id=pid,
        name=f"{pid} name",
        type="custom_cel",
        config=CustomCelConfig(pre_check_expression=pre, post_check_expression=post, **config),
        mode=mode,  # type: ignore[arg-type]
    )
    assert isinstance(definition.config, CustomCelConfig)
    return CelPolicy(definition, definition.config, engine)


# -- every variable reaches the expression, with its value ----------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("name", "literal"), PRE_VALUES.items())
def test_every_pre_variable_reaches_a_pre_check(
    engine: EngineName, name: str, literal: str
) -> None:
    assert cel(pre=f"{name} == {literal}", engine=engine).pre_check(PRE) is None
    assert cel(pre=f"{name} != {literal}", engine=engine).pre_check(PRE) is not None


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("name", "literal"), (PRE_VALUES | POST_VALUES).items())
def test_every_post_variable_reaches_a_post_check(
    engine: EngineName, name: str, literal: str
) -> None:
    assert cel(post=f"{name} == {literal}", engine=engine).post_check(POST) is None
    assert cel(post=f"{name} != {literal}", engine=engine).post_check(POST) is not None


@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_max_tokens_and_cost_read_as_zero(engine: EngineName) -> None:
    pre = replace(PRE, max_tokens=None)
    post = replace(POST, pre=pre, cost_usd=None)
    assert cel(pre="max_tokens == 0", engine=engine).pre_check(pre) is None
    assert cel(post="max_tokens == 0 && cost_usd == 0.0", engine=engine).post_check(post) is None


# -- custom_cel denials in full ----------------------------------------------------------


def test_a_false_pre_check_in_full() -> None:
    policy = cel(pre="estimated_tokens < 100", post="status_code < 500", penalty_seconds=30)
    assert policy.pre_check(PRE) == Violation(
        policy_id="rule",
        policy_name="rule name",
        policy_type="custom_cel",
        shadow=False,
        status=403,
        code="policy_violation",
        message="request does not satisfy 'estimated_tokens < 100' (policy 'rule name', id rule)",
        # a pre-check never imposes the post-check's penalty
        details={
            "policy_id": "rule",
            "policy_name": "rule name",
            "expression": "estimated_tokens < 100",
        },
    )


def test_a_false_post_check_carries_its_penalty_and_message() -> None:
    policy = cel(post="total_tokens < 1000", penalty_seconds=30, message="too big", mode="shadow")
    assert policy.post_check(POST) == Violation(
        policy_id="rule",
        policy_name="rule name",
        policy_type="custom_cel",
        shadow=True,
        status=403,
        code="policy_violation",
        message="too big (policy 'rule name', id rule)",
        details={
            "policy_id": "rule",
            "policy_name": "rule name",
            "expression": "total_tokens < 1000",
            "penalty_seconds": 30,
        },
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_a_check_that_cannot_be_evaluated_is_a_violation_naming_the_error(
    engine: EngineName,
) -> None:
    violation = cel(pre="estimated_tokens / (max_tokens - 512) > 1", engine=engine).pre_check(PRE)
    assert violation is not None
    assert violation.details["evaluation_error"]  # the engine's text, e.g. division by zero


def test_without_checks_of_a_phase_nothing_is_reported() -> None:
    assert cel(post="total_tokens < 1000").pre_check(PRE) is None
    assert cel(pre="estimated_tokens < 100").post_check(POST) is None


# -- local policy denials in full --------------------------------------------------------


def allowlist(*models: str) -> ModelAllowlistPolicy:
    definition = PolicyDefinition(
        id="al",
        name="only some",
        type="model_allowlist",
        config=ModelAllowlistConfig(models=models),
    )
    return ModelAllowlistPolicy(definition, ModelAllowlistConfig(models=models))


def test_a_refused_model_in_full() -> None:
    assert allowlist("gpt-4o", "claude-*").pre_check(PRE) == Violation(
        policy_id="al",
        policy_name="only some",
        policy_type="model_allowlist",
        shadow=False,
        status=403,
        code="model_not_allowed",
        message=(
            "model 'gpt-4o-mini' is not allowed for this application (policy 'only some', id al)"
        ),
        details={"policy_id": "al", "policy_name": "only some", "model": "gpt-4o-mini"},
    )


@pytest.mark.parametrize(
    ("upstream", "allowed"),
    [("gpt-4o", True), ("gpt-4.1", False), ("", False)],
)
def test_an_alias_is_allowed_by_its_upstream_name_only_when_listed(
    upstream: str, allowed: bool
) -> None:
    aliased = replace(PRE, model="house-model", upstream_model=upstream)
    assert (allowlist("gpt-4o").pre_check(aliased) is None) is allowed


def test_a_too_large_request_in_full() -> None:
    definition = PolicyDefinition(
        id="sz", name="small", type="request_size", config=RequestSizeConfig(max_bytes=1000)
    )
    policy = RequestSizePolicy(definition, RequestSizeConfig(max_bytes=1000))
    assert policy.pre_check(PRE) == Violation(
        policy_id="sz",
        policy_name="small",
        policy_type="request_size",
        shadow=False,
        status=413,
        code="request_too_large",
        message=(
            "request body of 2048 bytes exceeds the limit of 1000 bytes (policy 'small', id sz)"
        ),
        details={"policy_id": "sz", "policy_name": "small", "limit": 1000, "observed": 2048},
    )


# -- model-scoped post-checks and coverage ---------------------------------------------


def scoped_post(pid: str, pattern: str | None) -> PolicyDefinition:
    return PolicyDefinition(
        id=pid,
        name=pid,
        type="custom_cel",
        config=CustomCelConfig(post_check_expression="total_tokens < 10"),
        scope=Scope(model_pattern=pattern),
    )


def test_a_model_scoped_post_check_applies_to_its_models_only() -> None:
    engine = PolicyEngine([scoped_post("mini", "gpt-4o-mini*"), scoped_post("claude", "claude-*")])
    assert [v.policy_id for v in engine.post_check(CALLER, POST)] == ["mini"]


def test_covers_filters_by_model_when_given() -> None:
    engine = PolicyEngine(
        [scoped_post("all", None), scoped_post("mini", "gpt-4o-mini*"), scoped_post("c", "claude*")]
    )
    assert engine.covers(CALLER) == ("all", "c", "mini")
    assert engine.covers(CALLER, "gpt-4o-mini") == ("all", "mini")
    assert engine.covers(CALLER, "claude-3") == ("all", "c")


# -- cost in micro-dollars ---------------------------------------------------------------


def priced(input_per_mtok: float | None) -> ModelDeployment:
    return ModelDeployment(
        "m", "openai", "m", input_price_per_mtok=input_per_mtok, output_price_per_mtok=1.0
    )


@pytest.mark.parametrize(
    ("deployment", "micro"),
    [
        (None, 0),  # no deployment: nothing to charge a budget with
        (priced(None), 0),  # unpriced
        (priced(1500.4), 1501),  # rounded up to a whole micro-dollar
        # float noise below a millionth of a micro-dollar never rounds one up
        (priced(1500.0000004), 1500),
    ],
)
def test_cost_in_micro_dollars(deployment: ModelDeployment | None, micro: int) -> None:
    assert cost_micro_usd(Usage(prompt_tokens=1, total_tokens=1), deployment) == micro


# -- the engines on their own (engine_for caches one per phase) ------------------------


@pytest.mark.parametrize("engine_type", [CelExprEngine, CelPythonEngine])
def test_an_engine_knows_exactly_the_variables_it_is_given(
    engine_type: type[CelExprEngine] | type[CelPythonEngine],
) -> None:
    engine = engine_type({"a": VarType.INT, "s": VarType.STRING})
    compiled = engine.compile('a > 1 && s == "x"')
    assert compiled.evaluate({"a": 2, "s": "x", "other": 1}) is True
    assert compiled.evaluate({"a": 1, "s": "x"}) is False
    with pytest.raises(CelCompileError, match="undeclared reference to 'b'"):
        engine.compile("b > 1")


@pytest.mark.parametrize(
    ("engine", "source", "message"),
    [
        (
            "cel-expr",
            "nope1 == 1 && nope2 == 2",
            "1:1: undeclared reference to 'nope1' (in container '') (and 1 more)",
        ),
        (
            "cel-expr",
            "model > 3",
            "1:7: found no matching overload for '_>_' applied to '(string, int)'",
        ),
        (
            "cel-python",
            "model > 3",
            "1:1: found no matching overload for relation_gt applied to '(string, int)'",
        ),
        (
            "cel-python",
            "[1, 2].map(x, x) == 1",
            "1:1: found no matching overload for relation_eq applied to '(list, int)'",
        ),
        ("cel-python", "estimated_tokens + 1", "1:1: expression must evaluate to bool"),
    ],
)
def test_compile_error_texts(engine: EngineName, source: str, message: str) -> None:
    with pytest.raises(CelCompileError) as caught:
        compile_expression(source, Phase.PRE, engine=engine)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("engine", "text"),
    [("cel-expr", "INVALID_ARGUMENT: divide by zero"), ("cel-python", "modulus or divide by zero")],
)
def test_the_evaluation_error_is_the_engines_text(engine: EngineName, text: str) -> None:
    violation = cel(pre="estimated_tokens / (max_tokens - 512) > 1", engine=engine).pre_check(PRE)
    assert violation is not None
    assert violation.details["evaluation_error"] == text


@pytest.mark.parametrize(
    ("engine", "text"),
    [
        ("cel-expr", "Unexpected value type for 'model': int"),
        ("cel-python", "'model' must be string, got int"),
    ],
)
def test_a_variable_of_the_wrong_type_is_named(engine: EngineName, text: str) -> None:
    compiled = compile_expression('model == "x"', Phase.PRE, engine=engine)
    with pytest.raises(CelEvaluationError, match=re.escape(text)):
        compiled.evaluate({"model": 42})


def test_a_non_bool_result_names_its_type() -> None:
    with pytest.raises(CelCompileError) as caught:
        compile_expression("estimated_tokens + 1", Phase.PRE, engine="cel-expr")
    assert str(caught.value) == "1:1: expression must evaluate to bool, not int"


@pytest.mark.parametrize("phase", ["pre", "post"])
def test_the_engine_named_is_the_engine_used(phase: str) -> None:
    # cel-expr's type checker accepts a lookup of a missing key (a run-time error);
    # cel-python checks by evaluating with dummy values, and this lookup always fails
    source = '{"a": 1}["b"] == 1'
    assert cel(**{phase: source}, engine="cel-expr").definition.id == "rule"
    with pytest.raises(CelCompileError, match="no such key"):
        cel(**{phase: source}, engine="cel-python")


# -- rate, token and cost limit denials in full ----------------------------------------

NOW = 1_768_435_200.0  # 2026-01-15T00:00:00Z
MINUTE = Window(WindowUnit.MINUTE)


def state(limit: int, used: int, *, reset_in: float, retry_in: float | None) -> CounterState:
    return CounterState(
        key="k",
        limit=limit,
        window=MINUTE,
        bucket_start=int(NOW),
        used=used,
        remaining=max(0, limit - used),
        reset_at=NOW + reset_in,
        retry_at=None if retry_in is None else NOW + retry_in,
    )


def test_a_rate_limit_denial_in_full() -> None:
    config = RateLimitConfig(requests=5, window="1m")
    definition = PolicyDefinition(id="r1", name="five", type="rate_limit", config=config)
    policy = RateLimitPolicy(definition, config)
    violation = policy.violation(state(5, 5, reset_in=80, retry_in=21.3), 1, NOW)
    assert violation == Violation(
        policy_id="r1",
        policy_name="five",
        policy_type="rate_limit",
        shadow=False,
        status=429,
        code="rate_limit_exceeded",
        message=(
            "rate limit exceeded: limit 5 per 1m, would reach 6; retry in 22s"
            " (policy 'five', id r1)"
        ),
        details={
            "policy_id": "r1",
            "policy_name": "five",
            "limit": 5,
            "observed": 6,
            "window": "1m",
            "unit": "requests",
            "resets_at": "2026-01-15T00:01:20+00:00",
            "retry_after_seconds": 22,
        },
    )


def test_a_token_limit_denial_in_full() -> None:
    config = TokenLimitConfig(limit=1000, count="prompt", window="1m")
    definition = PolicyDefinition(
        id="t1", name="prompts", type="token_limit", config=config, mode="shadow"
    )
    policy = TokenLimitPolicy(definition, config)
    # already past the limit: the usage observed is reported, not usage + amount
    violation = policy.violation(state(1000, 1200, reset_in=0.2, retry_in=None), 25, NOW)
    assert violation == Violation(
        policy_id="t1",
        policy_name="prompts",
        policy_type="token_limit",
        shadow=True,
        status=429,
        code="token_limit_exceeded",
        message=(
            "token limit exceeded: limit 1000 per 1m, would reach 1200; retry in 1s"
            " (policy 'prompts', id t1)"
        ),
        details={
            "policy_id": "t1",
            "policy_name": "prompts",
            "limit": 1000,
            "observed": 1200,
            "window": "1m",
            "unit": "prompt_tokens",
            "resets_at": "2026-01-15T00:00:00.200000+00:00",
            "retry_after_seconds": 1,
        },
    )


def test_a_cost_budget_denial_in_dollars() -> None:
    config = TokenLimitConfig(limit_usd=0.5, count="cost_usd", window="1m")
    definition = PolicyDefinition(id="b1", name="budget", type="token_limit", config=config)
    policy = TokenLimitPolicy(definition, config)
    violation = policy.violation(state(500_000, 499_990, reset_in=80, retry_in=None), 25, NOW)
    assert violation.message == (
        "token limit exceeded: limit $0.5 per 1m, would reach $0.500015; retry in 80s"
        " (policy 'budget', id b1)"
    )
    assert (violation.details["limit"], violation.details["observed"]) == (0.5, 0.500015)
    assert violation.details["unit"] == "usd"


# -- provider account quotas -----------------------------------------------------------


def test_account_quota_policies_in_full() -> None:
    # a name of its own: account_policies is cached per account value
    name = f"acme-{uuid.uuid4().hex[:8]}"
    account = ProviderAccount(
        name=name,
        provider="openai",
        base_host="api.openai.com",
        credential_ref="k",
        requests_per_minute=60,
        tokens_per_minute=90_000,
    )
    rate, tokens = account_policies(account)
    assert (rate.definition.id, rate.definition.name, rate.definition.type) == (
        f"account:{name}:requests_per_minute",
        f"provider account '{name}' requests per minute",
        "rate_limit",
    )
    assert (tokens.definition.id, tokens.definition.name, tokens.definition.type) == (
        f"account:{name}:tokens_per_minute",
        f"provider account '{name}' tokens per minute",
        "token_limit",
    )
    assert rate.definition.config == rate.config
    assert tokens.definition.config == tokens.config
    assert (rate.limit, tokens.limit, rate.window, tokens.window) == (60, 90_000, MINUTE, MINUTE)
    assert rate.key(CALLER, "m") == f"ps:{{account:{name}}}:requests"
    assert tokens.key(CALLER, "m") == f"ps:{{account:{name}}}:tokens"


@pytest.mark.parametrize(
    ("count", "usage", "charged"),
    [
        ("total", Usage(prompt_tokens=10, completion_tokens=20, total_tokens=35), 35),
        # a report without a total: prompt + completion
        ("total", Usage(prompt_tokens=10, completion_tokens=20), 30),
        ("prompt", Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30), 10),
        ("completion", Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30), 20),
    ],
)
def test_what_a_finished_request_costs_each_count(count: str, usage: Usage, charged: int) -> None:
    assert TokenLimitPolicy.actual_for(count, usage, None) == charged


def test_an_unknown_count_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"^unknown token count 'bogus'$"):
        TokenLimitPolicy.actual_for("bogus", Usage(), None)


# -- cel-python's own checks (no type checker: see cel_engines) --------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # a method argument is a reference like any other; only macros bind names
        ("model.startsWith(nope)", "1:1: undeclared reference to 'nope'"),
        ("estimated_tokens == 1 ]", "1:23: syntax error near 'estimated_tokens == 1 ]'"),
        ("\n\n estimated_tokens ==", "3:19: syntax error near 'estimated_tokens =='"),
        # a reference the dummy values never reach (short-circuit) is still checked
        ("false && model.startsWith(nope)", "1:1: undeclared reference to 'nope'"),
    ],
)
def test_cel_python_compile_error_texts(source: str, message: str) -> None:
    with pytest.raises(CelCompileError) as caught:
        compile_expression(source, Phase.PRE, engine="cel-python")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({}, "missing variable 'max_tokens'"),
        ({"max_tokens": True}, "'max_tokens' must be int, got bool"),  # a bool is no int
        ({"max_tokens": "3"}, "'max_tokens' must be int, got str"),
    ],
)
def test_cel_python_checks_the_variables_it_is_given(
    variables: dict[str, object], message: str
) -> None:
    compiled = compile_expression("max_tokens > 1", Phase.PRE, engine="cel-python")
    with pytest.raises(CelEvaluationError, match=f"^{re.escape(message)}$"):
        compiled.evaluate(variables)


def test_each_phase_declares_its_variables() -> None:
    assert variables_for(Phase.PRE) is PRE_VARIABLES
    assert variables_for(Phase.POST) is POST_VARIABLES
    assert set(PRE_VARIABLES) < set(POST_VARIABLES)


# -- the engine: per-caller policies, evaluation order, its CEL engine ------------------


def size_policy(pid: str, max_bytes: int, scope: Scope | None = None) -> PolicyDefinition:
    return PolicyDefinition(
        id=pid,
        name=pid,
        type="request_size",
        config=RequestSizeConfig(max_bytes=max_bytes),
        scope=scope or Scope(),
    )


def test_each_caller_gets_its_own_policies_from_one_engine() -> None:
    engine = PolicyEngine(
        [
            size_policy("a1-only", 10, Scope(app_id="a1")),
            size_policy("a2-only", 10, Scope(app_id="a2")),
        ]
    )
    other = Identity(app_id="a2", org_id="o1", environment="dev", key_id="k2")
    assert engine.covers(CALLER) == ("a1-only",)
    assert engine.covers(other) == ("a2-only",)
    assert engine.covers(CALLER) == ("a1-only",)


def test_a_passing_policy_does_not_end_the_evaluation() -> None:
    engine = PolicyEngine([size_policy("roomy", 10_000), size_policy("tight", 1_000)])
    decision = engine.pre_check(CALLER, PRE)
    assert decision.denial is not None
    assert decision.denial.policy_id == "tight"


def test_the_engine_lists_its_enabled_definitions_in_order() -> None:
    late = replace(size_policy("late", 10), priority=200)
    off = replace(size_policy("off", 10), enabled=False)
    engine = PolicyEngine([late, off, size_policy("b", 10), size_policy("a", 10)])
    assert [d.id for d in engine.definitions] == ["a", "b", "late"]


def test_the_engine_compiles_with_the_cel_engine_it_is_given() -> None:
    definition = PolicyDefinition(
        id="c",
        name="c",
        type="custom_cel",
        config=CustomCelConfig(pre_check_expression='{"a": 1}["b"] == 1'),
    )
    assert PolicyEngine([definition], cel_engine="cel-expr").definitions == (definition,)
    with pytest.raises(CelCompileError, match="no such key"):
        PolicyEngine([definition], cel_engine="cel-python")


def test_a_config_of_no_known_type_is_refused_by_name() -> None:
    definition = PolicyDefinition(
        id="x",
        name="x",
        type="mystery",
        config=Scope(),  # type: ignore[arg-type]
    )
    with pytest.raises(TypeError, match=r"^no policy type for config Scope$"):
        build_policy(definition)


# -- counter keys: a stored format (changing it resets every counter on upgrade) --------


@pytest.mark.parametrize(
    ("scope", "model", "key"),
    [
        ("org", "gpt-4o", "ps:{org:o1}:org:p1"),
        ("app", "gpt-4o", "ps:{org:o1}:app:a1:p1"),
        ("app_env", "gpt-4o", "ps:{org:o1}:app:a1:env:dev:p1"),
        ("api_key", "gpt-4o", "ps:{org:o1}:key:k:p1"),
        ("app_model", "gpt-4o", "ps:{org:o1}:app:a1:model:gpt-4o:p1"),
        ("app_model", "", "ps:{org:o1}:app:a1:model:-:p1"),
    ],
)
def test_the_counter_key_of_each_scope(scope: str, model: str, key: str) -> None:
    config = RateLimitConfig(requests=5, window="1m", key=scope)  # type: ignore[arg-type]
    definition = PolicyDefinition(id="p1", name="p1", type="rate_limit", config=config)
    assert RateLimitPolicy(definition, config).key(CALLER, model) == key


@pytest.mark.parametrize("engine", ENGINES)
def test_an_empty_expression_is_refused(engine: EngineName) -> None:
    with pytest.raises(CelCompileError) as caught:
        compile_expression(" \n ", Phase.PRE, engine=engine)
    assert str(caught.value) == "1:1: expression is empty"


def test_an_error_without_a_position_keeps_the_engines_text() -> None:
    nested = "(" * 200 + "true" + ")" * 200
    with pytest.raises(CelCompileError) as caught:
        compile_expression(nested, Phase.PRE, engine="cel-expr")
    assert (caught.value.line, caught.value.column) == (1, 1)
    assert "recursion limit exceeded" in caught.value.message


@pytest.mark.parametrize("text", ["month", "1mo", "mo", " Month "])
def test_every_spelling_of_a_calendar_month(text: str) -> None:
    assert parse_window(text) == Window(WindowUnit.MONTH)


async def test_the_static_source_gives_everyone_its_engine() -> None:
    engine = PolicyEngine([])
    source = StaticPolicySource(engine)
    assert await source.engine_for(CALLER) is engine
