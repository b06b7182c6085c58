"""PolicyService: CRUD, ValidatePolicy and TestPolicy."""

from __future__ import annotations

from typing import Any

import grpc

from policy_sidecar.admin import policy_check
from policy_sidecar.admin.convert import (
    check_environment,
    mask_paths,
    page_size,
    struct,
    struct_dict,
    timestamp,
)
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import policies_pb2 as pb
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.definition import PolicyDefinition, Scope
from policy_sidecar.store.postgres import PolicyRepository
from policy_sidecar.store.types import Policy, PolicyMode

__all__ = ["PolicyServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
_SCOPE = ("org_id", "app_id", "environment", "model_pattern")
_MUTABLE = ("name", *_SCOPE, "mode", "priority", "enabled", "config")
_MODES: dict[pb.PolicyMode, PolicyMode] = {
    pb.POLICY_MODE_ENFORCE: "enforce",
    pb.POLICY_MODE_SHADOW: "shadow",
}
_MODE_ENUM = {v: k for k, v in _MODES.items()}
_PHASES: dict[pb.Phase, str] = {
    pb.PHASE_PRE_REQUEST: "pre",
    pb.PHASE_POST_REQUEST: "post",
}
_PHASE_ENUM = {v: k for k, v in _PHASES.items()}


def policy_message(p: Policy) -> pb.Policy:
    return pb.Policy(
        id=p.id,
        name=p.name,
        type=p.type,
        org_id=p.org_id,
        app_id=p.app_id,
        environment=p.environment,
        model_pattern=p.model_pattern,
        mode=_MODE_ENUM[p.mode],
        priority=p.priority,
        enabled=p.enabled,
        config=struct(p.config),
        version=p.version,
        create_time=timestamp(p.created_at),
        update_time=timestamp(p.updated_at),
    )


def _optional(p: pb.Policy, name: str) -> str | None:
    value: str = getattr(p, name)
    return value or None if p.HasField(name) else None


def _mode(p: pb.Policy, v: Violations, *, default: PolicyMode | None) -> PolicyMode:
    if p.mode == pb.POLICY_MODE_UNSPECIFIED and default is not None:
        return default
    mode = _MODES.get(p.mode)
    if mode is None:
        v.add("policy.mode", "must be POLICY_MODE_ENFORCE or POLICY_MODE_SHADOW")
        return "enforce"
    return mode


def _config(p: pb.Policy, v: Violations) -> dict[str, Any]:
    config = struct_dict(p.config)
    for issue in policy_check.check_config(p.type, config):
        field = "policy.type" if issue.field == "type" else f"policy.{issue.field}"
        where = f" (line {issue.line}, column {issue.column})" if issue.line else ""
        v.add(field, issue.message + where)
    return config


def _definition(p: pb.Policy, v: Violations) -> PolicyDefinition:
    """An unsaved policy from the request, for TestPolicy; None if invalid."""
    config = _config(p, v)
    mode = _mode(p, v, default="enforce")
    v.check()
    return PolicyDefinition(
        id=p.id or "pol_test",
        name=p.name or "(unsaved)",
        type=p.type,
        config=policy_check.parse_config(p.type, config),
        scope=Scope(**{name: _optional(p, name) for name in _SCOPE}),
        mode=mode,
        priority=p.priority,
        enabled=p.enabled if p.HasField("enabled") else True,
    )


def _stored_definition(p: Policy) -> PolicyDefinition:
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


def _contexts(request: pb.TestPolicyRequest) -> tuple[PreRequestContext, PostRequestContext | None]:
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


def _check_scope(org_id: str | None, app_id: str | None, env: str | None, v: Violations) -> None:
    if env is not None:
        check_environment(env, "policy.environment", v)
        if app_id is None:
            v.add("policy.environment", "an environment scope needs policy.app_id")
    if org_id == "" or app_id == "":
        v.add("policy.org_id" if org_id == "" else "policy.app_id", "set or leave unset")


class PolicyServicer:
    def __init__(self, repo: PolicyRepository) -> None:
        self._repo = repo

    async def CreatePolicy(
        self, request: pb.CreatePolicyRequest, context: Context
    ) -> pb.CreatePolicyResponse:
        p = request.policy
        v = Violations()
        v.require(p.name.strip(), "policy.name")
        v.require(p.type, "policy.type")
        config = _config(p, v) if p.type else {}
        mode = _mode(p, v, default="enforce")
        _check_scope(_optional(p, "org_id"), _optional(p, "app_id"), _optional(p, "environment"), v)
        v.check()
        created = await self._repo.create(
            name=p.name,
            type=p.type,
            config=config,
            mode=mode,
            priority=p.priority,
            enabled=p.enabled if p.HasField("enabled") else True,
            **{name: _optional(p, name) for name in _SCOPE},
        )
        return pb.CreatePolicyResponse(policy=policy_message(created))

    async def GetPolicy(
        self, request: pb.GetPolicyRequest, context: Context
    ) -> pb.GetPolicyResponse:
        v = Violations()
        v.require(request.id, "id")
        v.check()
        return pb.GetPolicyResponse(policy=policy_message(await self._repo.get(request.id)))

    async def ListPolicies(
        self, request: pb.ListPoliciesRequest, context: Context
    ) -> pb.ListPoliciesResponse:
        page = await self._repo.list(
            org_id=request.org_id or None,
            app_id=request.app_id or None,
            environment=request.environment or None,
            type=request.type or None,
            page_size=page_size(request.page_size),
            page_token=request.page_token or None,
        )
        return pb.ListPoliciesResponse(
            policies=[policy_message(p) for p in page.items],
            next_page_token=page.next_page_token or "",
        )

    async def UpdatePolicy(
        self, request: pb.UpdatePolicyRequest, context: Context
    ) -> pb.UpdatePolicyResponse:
        p = request.policy
        v = Violations()
        v.require(p.id, "policy.id")
        v.require(p.version, "policy.version")
        v.check()
        paths = mask_paths(request.update_mask, _MUTABLE)
        fields: dict[str, Any] = {name: _optional(p, name) for name in _SCOPE if name in paths}
        if "name" in paths:
            v.require(p.name.strip(), "policy.name")
            fields["name"] = p.name
        if "mode" in paths:
            fields["mode"] = _mode(p, v, default=None)
        if "priority" in paths:
            fields["priority"] = p.priority
        if "enabled" in paths:
            fields["enabled"] = p.enabled
        if paths & {"config", "app_id", "environment"}:
            stored = await self._repo.get(p.id)
            scope = {"app_id": stored.app_id, "environment": stored.environment, **fields}
            if "app_id" in paths or "environment" in paths:
                _check_scope(None, scope["app_id"], scope["environment"], v)
        if "config" in paths:
            if p.type and p.type != stored.type:
                v.add("policy.type", "is fixed at creation; create a new policy instead")
            fields["config"] = _config(pb.Policy(type=stored.type, config=p.config), v)
        v.check()
        updated = await self._repo.update(p.id, version=p.version, **fields)
        return pb.UpdatePolicyResponse(policy=policy_message(updated))

    async def DeletePolicy(
        self, request: pb.DeletePolicyRequest, context: Context
    ) -> pb.DeletePolicyResponse:
        v = Violations()
        v.require(request.id, "id")
        v.require(request.version, "version")
        v.check()
        await self._repo.delete(request.id, version=request.version)
        return pb.DeletePolicyResponse()

    async def ValidatePolicy(
        self, request: pb.ValidatePolicyRequest, context: Context
    ) -> pb.ValidatePolicyResponse:
        target = request.WhichOneof("target")
        if target == "config":
            c = request.config
            if not c.type:
                issues: tuple[policy_check.Issue, ...] = (policy_check.Issue("type", "required"),)
            else:
                issues = policy_check.check_config(c.type, struct_dict(c.config))
            prefix = "config."
        elif target == "expression":
            e = request.expression
            phase = _PHASES.get(e.phase)
            if phase is None:
                v = Violations()
                v.add("expression.phase", "must be PHASE_PRE_REQUEST or PHASE_POST_REQUEST")
                v.check()
            issues = policy_check.check_expression(e.source, phase or "pre")
            prefix = "expression."
        else:
            v = Violations()
            v.add("target", "set config or expression")
            v.check()
        return pb.ValidatePolicyResponse(
            valid=not issues,
            errors=[
                pb.ValidationError(
                    field=prefix + i.field, message=i.message, line=i.line, column=i.column
                )
                for i in issues
            ],
        )

    async def TestPolicy(
        self, request: pb.TestPolicyRequest, context: Context
    ) -> pb.TestPolicyResponse:
        v = Violations()
        v.require(request.request.model, "request.model")
        source = request.WhichOneof("policy_source")
        if source is None:
            v.add("policy_source", "set policy_id or policy")
        v.check()
        if source == "policy_id":
            definition = _stored_definition(await self._repo.get(request.policy_id))
        else:
            definition = _definition(request.policy, v)
        pre, post = _contexts(request)
        outcome = policy_check.evaluate(definition, pre, post)
        response = pb.TestPolicyResponse(
            verdict=pb.VERDICT_DENY if outcome.denied else pb.VERDICT_ALLOW,
            applies=outcome.applies,
            reason=outcome.reason,
        )
        if outcome.violation is not None:
            violation = outcome.violation
            response.shadow = violation.shadow
            response.violation.CopyFrom(
                pb.PolicyViolation(
                    code=violation.code,
                    message=violation.message,
                    http_status=violation.status,
                    details=struct(violation.details),
                    phase=pb.PHASE_POST_REQUEST
                    if outcome.phase == "post"
                    else pb.PHASE_PRE_REQUEST,
                )
            )
        return response
