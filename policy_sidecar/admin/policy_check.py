"""Validation and dry runs of policies (pure: no I/O, no gRPC).

Config documents are validated only through `CONFIG_TYPES`, the policy package's
single source of truth, so a type added there (rate_limit, custom_cel...) is
accepted, validated and reported here without changes. CEL errors raised inside a
config model keep their position: pydantic carries the raised error in the error
context, and the config models chain the `CelCompileError` as its cause.

Counter policies (rate and token limits) are tested against a given counter value
instead of live Redis counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from pydantic import ValidationError

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import cost_usd
from policy_sidecar.counters.windows import current_bucket_state
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy.cel import CelCompileError, Phase, compile_expression
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.decision import Violation
from policy_sidecar.policy.definition import CONFIG_TYPES, PolicyConfig, PolicyDefinition
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.limits import CounterPolicy
from policy_sidecar.providers.base import Usage

__all__ = [
    "Issue",
    "TestOutcome",
    "UnsupportedPolicyType",
    "check_config",
    "check_expression",
    "config_validator",
    "evaluate",
    "parse_config",
]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: `field` is a dotted path below the checked value's own field."""

    field: str
    message: str
    line: int = 0
    column: int = 0


class UnsupportedPolicyType(Exception):
    """The type validates but cannot be evaluated offline (e.g. needs counters)."""


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def parse_config(policy_type: str, config: Mapping[str, Any]) -> PolicyConfig:
    """The typed config; raises ValueError with every problem."""
    model = CONFIG_TYPES.get(policy_type)
    if model is None:
        raise ValueError(f"unknown policy type {policy_type!r}; known: {', '.join(CONFIG_TYPES)}")
    return cast(PolicyConfig, model.model_validate(dict(config)))


def check_config(policy_type: str, config: Mapping[str, Any]) -> tuple[Issue, ...]:
    """Problems of `config` for `policy_type`; fields are relative to the config."""
    if policy_type not in CONFIG_TYPES:
        known = ", ".join(sorted(CONFIG_TYPES))
        return (Issue("type", f"unknown policy type {policy_type!r}; known: {known}"),)
    try:
        CONFIG_TYPES[policy_type].model_validate(dict(config))
    except ValidationError as exc:
        fields = CONFIG_TYPES[policy_type].model_fields
        return tuple(_issue(err, fields) for err in exc.errors())
    return ()


def _cel_cause(error: object) -> CelCompileError | None:
    seen = 0
    while isinstance(error, BaseException) and seen < 5:
        if isinstance(error, CelCompileError):
            return error
        error, seen = error.__cause__, seen + 1
    return None


def _issue(err: Any, fields: Mapping[str, object]) -> Issue:
    raised = (err.get("ctx") or {}).get("error")
    field = _loc(("config", *err["loc"]))
    cel = _cel_cause(raised)
    if cel is None:
        return Issue(field, err["msg"])
    # A model-level validator names the expression field at the start of its message.
    name = str(raised).split(":", 1)[0]
    if not err["loc"] and name in fields:
        field = f"config.{name}"
    return Issue(field, cel.message, cel.line, cel.column)


def check_expression(source: str, phase: str) -> tuple[Issue, ...]:
    try:
        compile_expression(source, Phase(phase))
    except CelCompileError as exc:
        return (Issue("source", exc.message, exc.line, exc.column),)
    return ()


def config_validator(policy_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A store `ConfigValidator`: the repository's last line of defence."""
    issues = check_config(policy_type, config)
    if issues:
        raise ValueError("; ".join(f"{i.field}: {i.message}" for i in issues))
    return dict(config)


@dataclass(frozen=True, slots=True)
class TestOutcome:
    applies: bool
    reason: str
    violation: Violation | None = None
    phase: str = "pre"

    @property
    def denied(self) -> bool:
        # A post-request violation is found after the response was sent: it is recorded
        # (and may start a penalty), but cannot deny the request it is found on.
        return self.violation is not None and not self.violation.shadow and self.phase == "pre"


def evaluate(
    definition: PolicyDefinition,
    pre: PreRequestContext,
    post: PostRequestContext | None,
    *,
    deployment: ModelDeployment | None = None,
    counter_used: int = 0,
    now: float = 0.0,
) -> TestOutcome:
    """What this one policy decides for the sample; live counters are never touched
    (a counter policy is checked against `counter_used`)."""
    if not definition.enabled:
        return TestOutcome(False, "the policy is disabled: it is not evaluated")
    # The engine itself decides scope and order, as it does for live traffic.
    try:
        engine = PolicyEngine([definition])
    except TypeError as exc:
        raise UnsupportedPolicyType(
            f"policy type {definition.type!r} cannot be tested offline yet"
        ) from exc
    caller = Identity(pre.app_id, pre.org_id, pre.environment, "")
    if not engine.covers(caller):
        return TestOutcome(False, "the policy's scope does not cover this org/app/environment")
    if not engine.covers(caller, pre.model):
        scope = definition.scope
        return TestOutcome(False, f"model {pre.model!r} does not match {scope.model_pattern!r}")
    counters = engine.counters(caller, pre.model)
    if counters:
        return _counter(counters[0], pre, deployment, counter_used, now)
    decision = engine.pre_check(caller, pre)
    violation = decision.denial or (decision.shadow[0] if decision.shadow else None)
    if violation is not None:
        return TestOutcome(True, _reason(violation, "pre-request"), violation, "pre")
    if post is not None:
        found = engine.post_check(caller, priced(post, deployment))
        if found:
            violation = found[0]
            penalty = getattr(definition.config, "penalty_seconds", None)
            reason = f"post-request: {violation.message}; recorded, the response was already sent"
            if penalty and not violation.shadow:
                reason += f"; the application's next requests are denied for {penalty}s"
            return TestOutcome(True, reason, violation, "post")
    return TestOutcome(True, "the sample satisfies the policy")


def priced(post: PostRequestContext, deployment: ModelDeployment | None) -> PostRequestContext:
    """The sample with ``cost_usd`` from the deployment's current prices, by the same
    formula live traffic uses (unless the sample already states a cost)."""
    if post.cost_usd is not None or deployment is None:
        return post
    usage = Usage(
        prompt_tokens=post.prompt_tokens,
        completion_tokens=post.completion_tokens,
        total_tokens=post.total_tokens,
        cached_tokens=post.cached_tokens,
        reasoning_tokens=post.reasoning_tokens,
    )
    return replace(post, cost_usd=cost_usd(usage, deployment))


def _counter(
    policy: CounterPolicy,
    pre: PreRequestContext,
    deployment: ModelDeployment | None,
    used: int,
    now: float,
) -> TestOutcome:
    amount = policy.amount(pre, deployment)
    window = policy.config.window
    summary = (
        f"this request counts {policy.text(amount)} toward a limit of"
        f" {policy.text(policy.limit)} per {window} with {policy.text(used)} already used"
    )
    if used + amount <= policy.limit:
        return TestOutcome(True, f"{summary}: within the limit")
    state = current_bucket_state(
        "test", policy.window, limit=policy.limit, used=used, amount=amount, now=now
    )
    violation = policy.violation(state, amount, now)
    return TestOutcome(True, f"{summary}; {_reason(violation, 'pre-request')}", violation, "pre")


def _reason(violation: Violation, phase: str) -> str:
    verdict = "would be recorded (shadow mode), not denied" if violation.shadow else "denied"
    return f"{phase}: {violation.message}; {verdict}"
