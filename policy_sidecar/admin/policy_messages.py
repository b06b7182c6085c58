"""Conversions between policy messages and the policy package's values (pure)."""

from __future__ import annotations

from typing import Any

from policy_sidecar.admin import policy_check
from policy_sidecar.admin.convert import check_environment, struct, struct_dict, timestamp
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import policies_pb2 as pb
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.definition import PolicyDefinition, Scope
from policy_sidecar.store.records import Policy, PolicyMode

__all__ = [
    "MUTABLE",
    "PHASES",
    "PHASE_ENUM",
    "SCOPE",
    "check_scope",
    "config_of",
    "contexts",
    "definition",
    "mode_of",
    "optional",
    "policy_message",
    "stored_definition",
]
SCOPE = ("org_id", "app_id", "environment", "model_pattern")
MUTABLE = ("name", *SCOPE, "mode", "priority", "enabled", "config")
MODES: dict[pb.PolicyMode, PolicyMode] = {
    pb.POLICY_MODE_ENFORCE: "enforce",
    pb.POLICY_MODE_SHADOW: "shadow",
}
MODE_ENUM = {v: k for k, v in MODES.items()}
PHASES: dict[pb.Phase, str] = {
    pb.PHASE_PRE_REQUEST: "pre",
    pb.PHASE_POST_REQUEST: "post",
}
PHASE_ENUM = {v: k for k, v in PHASES.items()}


def policy_message(p: Policy) -> pb.Policy:
    return pb.Policy(
        id=p.id,
        name=p.name,
        type=p.type,
        org_id=p.org_id,
        app_id=p.app_id,
        environment=p.environment,
        model_pattern=p.model_pattern,
        mode=MODE_ENUM[p.mode],
        priority=p.priority,
        enabled=p.enabled,
        config=struct(p.config),
        version=p.version,
        create_time=timestamp(p.created_at),
        update_time=timestamp(p.updated_at),
    )


def optional(p: pb.Policy, name: str) -> str | None:
    value: str = getattr(p, name)
    return value or None if p.HasField(name) else None


def mode_of(p: pb.Policy, v: Violations, *, default: PolicyMode | None) -> PolicyMode:
    if p.mode == pb.POLICY_MODE_UNSPECIFIED and default is not None:
        return default
    mode = MODES.get(p.mode)
    if mode is None:
        v.add("policy.mode", "must be POLICY_MODE_ENFORCE or POLICY_MODE_SHADOW")
        return "enforce"
    return mode


def config_of(p: pb.Policy, v: Violations) -> dict[str, Any]:
    config = struct_dict(p.config)
    for issue in policy_check.check_config(p.type, config):
        field = "policy.type" if issue.field == "type" else f"policy.{issue.field}"
        where = f" (line {issue.line}, column {issue.column})" if issue.line else ""
        v.add(field, issue.message + where)
    return config


def definition(p: pb.Policy, v: Violations) -> PolicyDefinition:
    """An unsaved policy from the request, for TestPolicy; raises InvalidArgument."""
    config = config_of(p, v)
    mode = mode_of(p, v, default="enforce")
    v.check()
    return PolicyDefinition(
        id=p.id or "pol_test",
        name=p.name or "(unsaved)",
        type=p.type,
        config=policy_check.parse_config(p.type, config),
        scope=Scope(**{name: optional(p, name) for name in SCOPE}),
        mode=mode,
        priority=p.priority,
        enabled=p.enabled if p.HasField("enabled") else True,
    )


def stored_definition(p: Policy) -> PolicyDefinition:
    return PolicyDefinition(
        id=p.id,
        name=p.name,
        type=p.type,
        config=policy_check.parse_config(p.type, p.config),
        scope=Scope(p.org_id, p.app_id, p.environment, p.model_pattern),
        mode=p.mode,
        priority=p.priority,
        enabled=p.enabled,
    )


def contexts(request: pb.TestPolicyRequest) -> tuple[PreRequestContext, PostRequestContext | None]:
    s = request.request
    pre = PreRequestContext(
        request_size_bytes=s.request_size_bytes,
        estimated_tokens=s.estimated_tokens,
        model=s.model,
        org_id=s.org_id,
        app_id=s.app_id,
        environment=s.environment,
        provider=s.provider or "openai",
        stream=s.stream,
        max_tokens=s.max_tokens if s.HasField("max_tokens") else None,
    )
    if not request.HasField("response"):
        return pre, None
    r = request.response
    post = PostRequestContext(
        pre=pre,
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        total_tokens=r.total_tokens or r.prompt_tokens + r.completion_tokens,
        cached_tokens=r.cached_tokens,
        reasoning_tokens=r.reasoning_tokens,
        latency_ms=r.latency_ms,
        response_size_bytes=r.response_size_bytes,
        status_code=r.status_code or 200,
        cost_usd=None,
    )
    return pre, post


def check_scope(org_id: str | None, app_id: str | None, env: str | None, v: Violations) -> None:
    if env is not None:
        check_environment(env, "policy.environment", v)
        if app_id is None:
            v.add("policy.environment", "an environment scope needs policy.app_id")
    if org_id == "" or app_id == "":
        v.add("policy.org_id" if org_id == "" else "policy.app_id", "set or leave unset")
