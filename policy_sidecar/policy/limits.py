"""Rate and token limits: which counter a request touches, by how much, and what the
counter store's answer means. Pure: the store call happens in the enforcer."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from datetime import UTC, datetime

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.money import format_usd
from policy_sidecar.catalog.pricing import cost_usd
from policy_sidecar.counters.values import CounterOp, CounterState, counter_key
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy.context import PreRequestContext
from policy_sidecar.policy.decision import Violation
from policy_sidecar.policy.definition import (
    PolicyDefinition,
    RateLimitConfig,
    TokenLimitConfig,
)
from policy_sidecar.providers.base import Usage

# Shadow-mode counters are counted with this limit so they never block the request;
# whether they would have is judged against the real limit afterwards.
SHADOW_LIMIT = 2**50
MICRO = 1_000_000


def cost_micro_usd(usage: Usage, deployment: ModelDeployment | None) -> int:
    """Cost in micro-dollars (rounded up) by the one formula, `pricing.cost_usd`;
    0 without a deployment or without its prices (an unpriced model, allowed only by
    ``unpriced: allow_and_report``, does not consume a cost budget; it is reported)."""
    cost = None if deployment is None else cost_usd(usage, deployment)
    if cost is None:
        return 0
    # Rounded to a millionth of a micro-dollar first: float noise (1500.0000000000002)
    # must not round a whole micro-dollar up.
    return math.ceil(round(cost * MICRO, 6))


def _scope_parts(
    config: RateLimitConfig | TokenLimitConfig, identity: Identity, model: str
) -> tuple[str, ...]:
    match config.key:
        case "org":
            return ("org",)
        case "app":
            return ("app", identity.app_id)
        case "app_env":
            return ("app", identity.app_id, "env", identity.environment)
        case "api_key":
            return ("key", identity.key_id)
        case "app_model":
            return ("app", identity.app_id, "model", model or "-")


class CounterPolicy(ABC):
    """Shared by rate and token limits: one counter per request."""

    unit = ""  # "requests" or "tokens": the x-ratelimit-*-<unit> header family

    def __init__(
        self, definition: PolicyDefinition, config: RateLimitConfig | TokenLimitConfig
    ) -> None:
        self.definition = definition
        self.config = config
        self.window = config.parsed_window
        self.shadow = definition.mode == "shadow"
        # Building a key percent-encodes every part: remember them per caller and model.
        self._keys: dict[tuple[str, str, str, str, str], str] = {}
        self._ops: dict[tuple[str, str, str, str, str], CounterOp] = {}  # rate limits
        # The op's limit, read once (the config is frozen): ``limit`` is a property.
        self._op_limit = SHADOW_LIMIT if self.shadow else self.limit

    @property
    @abstractmethod
    def limit(self) -> int: ...

    def key(self, identity: Identity, model: str) -> str:
        cache_key = (identity.org_id, identity.app_id, identity.environment, identity.key_id, model)
        found = self._keys.get(cache_key)
        if found is None:
            # Every counter is tagged by organisation, so all counters of one request
            # share one Redis Cluster slot (the script touches them atomically).
            parts = _scope_parts(self.config, identity, model)
            found = counter_key("org", identity.org_id, *parts, self.definition.id)
            if len(self._keys) > 100_000:
                self._keys.clear()
            self._keys[cache_key] = found
        return found

    @abstractmethod
    def amount(self, ctx: PreRequestContext, deployment: ModelDeployment | None) -> int: ...

    def op(
        self, identity: Identity, ctx: PreRequestContext, deployment: ModelDeployment | None
    ) -> CounterOp:
        return CounterOp(
            key=self.key(identity, ctx.model),
            limit=self._op_limit,
            window=self.window,
            amount=self.amount(ctx, deployment),
        )

    def violation(self, state: CounterState, amount: int, now: float) -> Violation:
        if amount > self.limit:
            return self._never_fits(amount)
        retry = state.retry_at if state.retry_at is not None else state.reset_at
        retry_after = max(1, math.ceil(retry - now))
        observed = state.used if state.used > self.limit else state.used + amount
        return Violation(
            policy_id=self.definition.id,
            policy_name=self.definition.name,
            policy_type=self.definition.type,
            shadow=self.shadow,
            status=429,
            code="rate_limit_exceeded" if self.unit == "requests" else "token_limit_exceeded",
            message=(
                f"{self.definition.type.replace('_', ' ')} exceeded: limit"
                f" {self.text(self.limit)} per {self.config.window}, would reach"
                f" {self.text(observed)}; retry in "
                f"{retry_after}s (policy '{self.definition.name}', id {self.definition.id})"
            ),
            details={
                "policy_id": self.definition.id,
                "policy_name": self.definition.name,
                "limit": self._shown(self.limit),
                "observed": self._shown(observed),
                "window": self.config.window,
                "unit": self._unit_name(),
                "resets_at": datetime.fromtimestamp(state.reset_at, UTC).isoformat(),
                "retry_after_seconds": retry_after,
            },
        )

    def _never_fits(self, amount: int) -> Violation:
        """The request alone needs more than the whole limit: no window will ever admit
        it, so no Retry-After (an SDK would retry in vain); a 400 that says what to change."""
        return Violation(
            policy_id=self.definition.id,
            policy_name=self.definition.name,
            policy_type=self.definition.type,
            shadow=self.shadow,
            status=400,
            code="request_exceeds_limit",
            message=(
                f"this request alone needs {self._amount_text(amount)}, more than the"
                f" {self.definition.type.replace('_', ' ')} of {self.text(self.limit)} per"
                f" {self.config.window} allows: it cannot be admitted in any window; lower"
                f" max_tokens or the prompt, or raise the limit (policy"
                f" '{self.definition.name}', id {self.definition.id})"
            ),
            details={
                "policy_id": self.definition.id,
                "policy_name": self.definition.name,
                "limit": self._shown(self.limit),
                "observed": self._shown(amount),
                "window": self.config.window,
                "unit": self._unit_name(),
            },
        )

    def _amount_text(self, value: int) -> str:
        shown = self.text(value)
        return shown if shown.startswith("$") else f"{shown} {self._unit_name().replace('_', ' ')}"

    def _shown(self, value: int) -> int | float:
        return value

    def text(self, value: int) -> str:
        """A counter value as messages print it (``$0.00005`` for cost budgets)."""
        return str(self._shown(value))

    def _unit_name(self) -> str:
        return self.unit

    @property
    def header_unit(self) -> str | None:
        """The x-ratelimit-*-<unit> header family (None: no headers); only counters of
        one family are compared to pick the tightest."""
        return self.unit


class RateLimitPolicy(CounterPolicy):
    unit = "requests"
    config: RateLimitConfig

    @property
    def limit(self) -> int:
        return self.config.requests

    def amount(self, ctx: PreRequestContext, deployment: ModelDeployment | None) -> int:
        return 1

    def op(
        self, identity: Identity, ctx: PreRequestContext, deployment: ModelDeployment | None
    ) -> CounterOp:
        """The same op for every request of a caller and model (a request counts 1):
        built once (`CounterOp` is frozen), remembered beside the key."""
        cache_key = (
            identity.org_id, identity.app_id, identity.environment, identity.key_id, ctx.model
        )  # fmt: skip
        found = self._ops.get(cache_key)
        if found is None:
            found = super().op(identity, ctx, deployment)
            if len(self._ops) > 100_000:
                self._ops.clear()
            self._ops[cache_key] = found
        return found


class TokenLimitPolicy(CounterPolicy):
    unit = "tokens"
    config: TokenLimitConfig

    @property
    def limit(self) -> int:
        if self.config.count == "cost_usd":
            return math.floor((self.config.limit_usd or 0) * MICRO)
        return self.config.limit or 0

    def reserved_output(self, ctx: PreRequestContext) -> int:
        asked = ctx.max_tokens if ctx.max_tokens is not None else self.config.default_max_output
        return min(
            math.ceil(asked * self.config.output_reserve_ratio), self.config.output_reserve_cap
        )

    def amount(self, ctx: PreRequestContext, deployment: ModelDeployment | None) -> int:
        output = self.reserved_output(ctx)
        # What `actual_for` returns for these counts, without building a `Usage`.
        match self.config.count:
            case "total":
                return ctx.estimated_tokens + output
            case "prompt":
                return ctx.estimated_tokens
            case "completion":
                return output
        return self.actual(
            Usage(
                prompt_tokens=ctx.estimated_tokens,
                completion_tokens=output,
                total_tokens=ctx.estimated_tokens + output,
            ),
            deployment,
        )

    def actual(self, usage: Usage, deployment: ModelDeployment | None) -> int:
        """What a finished request really costs this counter."""
        return self.actual_for(self.config.count, usage, deployment)

    @staticmethod
    def actual_for(count: str, usage: Usage, deployment: ModelDeployment | None) -> int:
        match count:
            case "total":
                return usage.total_tokens or usage.prompt_tokens + usage.completion_tokens
            case "prompt":
                return usage.prompt_tokens
            case "completion":
                return usage.completion_tokens
            case "cost_usd":
                return cost_micro_usd(usage, deployment)
        raise ValueError(f"unknown token count {count!r}")

    def _shown(self, value: int) -> int | float:
        return value / MICRO if self.config.count == "cost_usd" else value

    def text(self, value: int) -> str:
        return format_usd(value / MICRO) if self.config.count == "cost_usd" else str(value)

    def _unit_name(self) -> str:
        return "usd" if self.config.count == "cost_usd" else f"{self.config.count}_tokens"

    @property
    def header_unit(self) -> str | None:
        # A budget in USD is not a token limit: it never shows as (nor competes for the
        # tightest of) the x-ratelimit-*-tokens headers. OpenAI's header family has no
        # cost member, so cost budgets have no headers; denials carry their details.
        return None if self.config.count == "cost_usd" else "tokens"
