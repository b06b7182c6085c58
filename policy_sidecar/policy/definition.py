"""Stored policy definitions, validated into immutable typed objects."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policy_sidecar.counters.values import Window, WindowUnit
from policy_sidecar.policy.cel import DEFAULT_ENGINE, CelCompileError, Phase, compile_expression

PolicyMode = Literal["enforce", "shadow"]


class ModelAllowlistConfig(BaseModel):
    """Models a request may ask for: exact names or glob patterns (``gpt-4o*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    models: Annotated[tuple[str, ...], Field(min_length=1, strict=False)]


class RequestSizeConfig(BaseModel):
    """The largest request body allowed, in bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    max_bytes: Annotated[int, Field(gt=0)]


_UNITS = {
    "s": WindowUnit.SECOND,
    "m": WindowUnit.MINUTE,
    "h": WindowUnit.HOUR,
    "d": WindowUnit.DAY,
}
WINDOW_SYNTAX = "a window like 30s, 1m, 5m, 1h, 1d or 'month' (calendar month, UTC)"


def parse_window(text: str) -> Window:
    """``30s``, ``1m``, ``12h``, ``7d`` (sliding) or ``month`` (calendar month, UTC)."""
    spec = text.strip().lower()
    if spec in ("month", "1mo", "mo"):
        return Window(WindowUnit.MONTH)
    number, unit = spec[:-1], spec[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) < 1:
        raise ValueError(f"{text!r} is not {WINDOW_SYNTAX}")
    return Window(_UNITS[unit], int(number))


CounterKey = Literal["app", "app_env", "api_key", "org", "app_model"]
FailMode = Literal["open", "closed"]


class _CounterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    window: str
    # What one counter is shared by: the app, the app in one environment, one API key,
    # the whole organisation, or the app for one model.
    key: CounterKey = "app_env"
    # When the counter store (Redis) is unreachable: let traffic through, or refuse (503).
    fail_mode: FailMode = "open"

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @property
    def parsed_window(self) -> Window:
        return parse_window(self.window)


class RateLimitConfig(_CounterConfig):
    """At most ``requests`` requests per window."""

    requests: Annotated[int, Field(gt=0)]


class TokenLimitConfig(_CounterConfig):
    """At most ``limit`` tokens (or ``limit_usd`` dollars) per window.

    Before the request the estimate is reserved: the prompt estimate plus
    ``output_reserve_ratio`` of the request's max output tokens (or of
    ``default_max_output`` when it names none), at most ``output_reserve_cap``.
    After the response the reservation is settled to the real usage.
    """

    count: Literal["total", "prompt", "completion", "cost_usd"] = "total"
    limit: Annotated[int, Field(gt=0)] | None = None
    limit_usd: Annotated[float, Field(gt=0, strict=False)] | None = None
    output_reserve_ratio: Annotated[float, Field(ge=0, le=1, strict=False)] = 0.5
    output_reserve_cap: Annotated[int, Field(ge=0)] = 4096
    default_max_output: Annotated[int, Field(ge=0)] = 256

    @model_validator(mode="after")
    def _limit_matches_count(self) -> TokenLimitConfig:
        if self.count == "cost_usd":
            if self.limit_usd is None or self.limit is not None:
                raise ValueError("count 'cost_usd' takes 'limit_usd' (dollars), not 'limit'")
        elif self.limit is None or self.limit_usd is not None:
            raise ValueError(f"count '{self.count}' takes 'limit' (tokens), not 'limit_usd'")
        return self


class CustomCelConfig(BaseModel):
    """CEL expressions that must hold: before the request and/or after the response.

    A false post-check is a violation (recorded, counted); with ``penalty_seconds`` it
    also makes the application's next requests deny for that long.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    pre_check_expression: str | None = None
    post_check_expression: str | None = None
    message: str | None = None
    penalty_seconds: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _compiles(self) -> CustomCelConfig:
        if self.pre_check_expression is None and self.post_check_expression is None:
            raise ValueError("give pre_check_expression, post_check_expression or both")
        if self.penalty_seconds is not None and self.post_check_expression is None:
            raise ValueError("penalty_seconds needs a post_check_expression")
        for field_name, source, phase in (
            ("pre_check_expression", self.pre_check_expression, Phase.PRE),
            ("post_check_expression", self.post_check_expression, Phase.POST),
        ):
            if source is None:
                continue
            try:
                compile_expression(source, phase, engine=DEFAULT_ENGINE)
            except CelCompileError as exc:
                raise ValueError(f"{field_name}: {exc}") from exc
        return self


PolicyConfig = (
    ModelAllowlistConfig | RequestSizeConfig | RateLimitConfig | TokenLimitConfig | CustomCelConfig
)

CONFIG_TYPES: dict[str, type[BaseModel]] = {
    "model_allowlist": ModelAllowlistConfig,
    "request_size": RequestSizeConfig,
    "rate_limit": RateLimitConfig,
    "token_limit": TokenLimitConfig,
    "custom_cel": CustomCelConfig,
}


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a policy applies; an unset field matches everything."""

    org_id: str | None = None
    app_id: str | None = None
    environment: str | None = None
    model_pattern: str | None = None

    def matches_caller(self, *, org_id: str, app_id: str, environment: str) -> bool:
        return (
            (self.org_id is None or self.org_id == org_id)
            and (self.app_id is None or self.app_id == app_id)
            and (self.environment is None or self.environment == environment)
        )

    def matches_model(self, model: str | None) -> bool:
        if self.model_pattern is None:
            return True
        return model is not None and fnmatchcase(model, self.model_pattern)


@dataclass(frozen=True, slots=True)
class PolicyDefinition:
    id: str
    name: str
    type: str
    config: PolicyConfig
    scope: Scope = Scope()
    mode: PolicyMode = "enforce"
    priority: int = 100
    enabled: bool = True
