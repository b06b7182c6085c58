"""Policy evaluation: contexts, definitions, types and the engine. No I/O here."""

from __future__ import annotations

from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.decision import ALLOW, Decision, Violation
from policy_sidecar.policy.definition import (
    CONFIG_TYPES,
    ModelAllowlistConfig,
    PolicyConfig,
    PolicyDefinition,
    PolicyMode,
    RequestSizeConfig,
    Scope,
)
from policy_sidecar.policy.engine import PolicyEngine

__all__ = [
    "ALLOW",
    "CONFIG_TYPES",
    "Decision",
    "ModelAllowlistConfig",
    "PolicyConfig",
    "PolicyDefinition",
    "PolicyEngine",
    "PolicyMode",
    "PostRequestContext",
    "PreRequestContext",
    "RequestSizeConfig",
    "Scope",
    "Violation",
]
