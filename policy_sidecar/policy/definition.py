"""Stored policy definitions, validated into immutable typed objects."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

PolicyMode = Literal["enforce", "shadow"]


class ModelAllowlistConfig(BaseModel):
    """Models a request may ask for: exact names or glob patterns (``gpt-4o*``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    models: Annotated[tuple[str, ...], Field(min_length=1, strict=False)]


class RequestSizeConfig(BaseModel):
    """The largest request body allowed, in bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    max_bytes: Annotated[int, Field(gt=0)]


PolicyConfig = ModelAllowlistConfig | RequestSizeConfig

CONFIG_TYPES: dict[str, type[BaseModel]] = {
    "model_allowlist": ModelAllowlistConfig,
    "request_size": RequestSizeConfig,
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
