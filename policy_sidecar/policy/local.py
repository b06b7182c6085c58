"""The policy types that need nothing but the request's own facts."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Protocol

from policy_sidecar.policy.cel import DEFAULT_ENGINE, EngineName
from policy_sidecar.policy.cel_policy import CelPolicy
from policy_sidecar.policy.context import PreRequestContext
from policy_sidecar.policy.decision import Violation
from policy_sidecar.policy.definition import (
    CustomCelConfig,
    ModelAllowlistConfig,
    PolicyDefinition,
    RateLimitConfig,
    RequestSizeConfig,
    TokenLimitConfig,
)
from policy_sidecar.policy.limits import CounterPolicy, RateLimitPolicy, TokenLimitPolicy


class LocalPolicy(Protocol):
    """A policy decided from the request alone: no I/O, microseconds."""

    definition: PolicyDefinition

    def pre_check(self, ctx: PreRequestContext) -> Violation | None: ...


def _violation(
    definition: PolicyDefinition, *, status: int, code: str, message: str, **details: object
) -> Violation:
    return Violation(
        policy_id=definition.id,
        policy_name=definition.name,
        policy_type=definition.type,
        shadow=definition.mode == "shadow",
        status=status,
        code=code,
        message=f"{message} (policy '{definition.name}', id {definition.id})",
        details={"policy_id": definition.id, "policy_name": definition.name, **details},
    )


class ModelAllowlistPolicy:
    def __init__(self, definition: PolicyDefinition, config: ModelAllowlistConfig) -> None:
        self.definition = definition
        self._exact = frozenset(m for m in config.models if not _is_glob(m))
        self._globs = tuple(m for m in config.models if _is_glob(m))

    def allows(self, model: str) -> bool:
        return model in self._exact or any(fnmatchcase(model, g) for g in self._globs)

    def pre_check(self, ctx: PreRequestContext) -> Violation | None:
        # An alias is allowed when either its own name or what it maps to is listed.
        if self.allows(ctx.model) or (ctx.upstream_model and self.allows(ctx.upstream_model)):
            return None
        return _violation(
            self.definition,
            status=403,
            code="model_not_allowed",
            message=f"model '{ctx.model}' is not allowed for this application",
            model=ctx.model,
        )


class RequestSizePolicy:
    def __init__(self, definition: PolicyDefinition, config: RequestSizeConfig) -> None:
        self.definition = definition
        self.max_bytes = config.max_bytes

    def check_size(self, size: int) -> Violation | None:
        if size <= self.max_bytes:
            return None
        return _violation(
            self.definition,
            status=413,
            code="request_too_large",
            message=f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes",
            limit=self.max_bytes,
            observed=size,
        )

    def pre_check(self, ctx: PreRequestContext) -> Violation | None:
        return self.check_size(ctx.request_size_bytes)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def build_policy(
    definition: PolicyDefinition, *, cel_engine: EngineName = DEFAULT_ENGINE
) -> LocalPolicy | CounterPolicy:
    """The factory: one policy object per stored definition."""
    config = definition.config
    if isinstance(config, ModelAllowlistConfig):
        return ModelAllowlistPolicy(definition, config)
    if isinstance(config, RequestSizeConfig):
        return RequestSizePolicy(definition, config)
    if isinstance(config, CustomCelConfig):
        return CelPolicy(definition, config, cel_engine)
    if isinstance(config, RateLimitConfig):
        return RateLimitPolicy(definition, config)
    if isinstance(config, TokenLimitConfig):
        return TokenLimitPolicy(definition, config)
    raise TypeError(f"no policy type for config {type(config).__name__}")
