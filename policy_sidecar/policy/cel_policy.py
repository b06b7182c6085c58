"""custom_cel policies: a compiled pre-check and/or post-check expression."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from policy_sidecar.policy.cel import (
    CelEvaluationError,
    CompiledExpression,
    EngineName,
    Phase,
    compile_expression,
)
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.decision import Violation
from policy_sidecar.policy.definition import CustomCelConfig, PolicyDefinition


def pre_variables(ctx: PreRequestContext) -> dict[str, Any]:
    out = asdict(ctx)
    out["max_tokens"] = ctx.max_tokens if ctx.max_tokens is not None else 0
    return out


def post_variables(ctx: PostRequestContext) -> dict[str, Any]:
    out = pre_variables(ctx.pre)
    out.update(
        prompt_tokens=ctx.prompt_tokens,
        completion_tokens=ctx.completion_tokens,
        total_tokens=ctx.total_tokens,
        cached_tokens=ctx.cached_tokens,
        reasoning_tokens=ctx.reasoning_tokens,
        latency_ms=ctx.latency_ms,
        response_size_bytes=ctx.response_size_bytes,
        status_code=ctx.status_code,
        cost_usd=ctx.cost_usd if ctx.cost_usd is not None else 0.0,
    )
    return out


class CelPolicy:
    """Compiled once when built. An expression that fails at run time (say, a division
    by zero) counts as a violation: a rule that cannot be checked does not pass."""

    def __init__(
        self, definition: PolicyDefinition, config: CustomCelConfig, engine: EngineName
    ) -> None:
        self.definition = definition
        self.config = config
        self._pre = (
            compile_expression(config.pre_check_expression, Phase.PRE, engine=engine)
            if config.pre_check_expression
            else None
        )
        self._post = (
            compile_expression(config.post_check_expression, Phase.POST, engine=engine)
            if config.post_check_expression
            else None
        )

    @property
    def has_post_check(self) -> bool:
        return self._post is not None

    def pre_check(self, ctx: PreRequestContext) -> Violation | None:
        if self._pre is None:
            return None
        return self._run(self._pre, pre_variables(ctx), "pre_check_expression")

    def post_check(self, ctx: PostRequestContext) -> Violation | None:
        if self._post is None:
            return None
        return self._run(self._post, post_variables(ctx), "post_check_expression")

    def _run(
        self, expr: CompiledExpression, variables: dict[str, Any], field: str
    ) -> Violation | None:
        error = None
        try:
            if expr.evaluate(variables):
                return None
        except CelEvaluationError as exc:
            error = str(exc)
        d = self.definition
        message = self.config.message or f"request does not satisfy {expr.source!r}"
        details: dict[str, Any] = {
            "policy_id": d.id,
            "policy_name": d.name,
            "expression": expr.source,
        }
        if error is not None:
            details["evaluation_error"] = error
        if field == "post_check_expression" and self.config.penalty_seconds:
            details["penalty_seconds"] = self.config.penalty_seconds
        return Violation(
            policy_id=d.id,
            policy_name=d.name,
            policy_type=d.type,
            shadow=d.mode == "shadow",
            status=403,
            code="policy_violation",
            message=f"{message} (policy '{d.name}', id {d.id})",
            details=details,
        )
