"""PolicyService: CRUD, ValidatePolicy and TestPolicy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from policy_sidecar.admin import policy_check
from policy_sidecar.admin import policy_messages as pm
from policy_sidecar.admin.convert import mask_paths, page_size, struct, struct_dict
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import policies_pb2 as pb
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.store.model_catalog import deployment_from
from policy_sidecar.store.postgres import ModelRepository, NotFoundError, PolicyRepository

__all__ = ["PolicyServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class PolicyServicer:
    def __init__(
        self,
        repo: PolicyRepository,
        models: ModelRepository,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repo = repo
        self._models = models
        self._clock = clock

    async def _deployment(self, model: str) -> ModelDeployment | None:
        """Prices for cost limits; an unknown model costs nothing, as in the sidecar."""
        try:
            return deployment_from(await self._models.get_by_name(model))
        except NotFoundError:
            return None

    async def CreatePolicy(
        self, request: pb.CreatePolicyRequest, context: Context
    ) -> pb.CreatePolicyResponse:
        p = request.policy
        v = Violations()
        v.require(p.name.strip(), "policy.name")
        v.require(p.type, "policy.type")
        config = pm.config_of(p, v) if p.type else {}
        mode = pm.mode_of(p, v, default="enforce")
        pm.check_scope(
            pm.optional(p, "org_id"), pm.optional(p, "app_id"), pm.optional(p, "environment"), v
        )
        v.check()
        created = await self._repo.create(
            name=p.name,
            type=p.type,
            config=config,
            mode=mode,
            priority=p.priority,
            enabled=p.enabled if p.HasField("enabled") else True,
            **{name: pm.optional(p, name) for name in pm.SCOPE},
        )
        return pb.CreatePolicyResponse(policy=pm.policy_message(created))

    async def GetPolicy(
        self, request: pb.GetPolicyRequest, context: Context
    ) -> pb.GetPolicyResponse:
        v = Violations()
        v.require(request.id, "id")
        v.check()
        return pb.GetPolicyResponse(policy=pm.policy_message(await self._repo.get(request.id)))

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
            policies=[pm.policy_message(p) for p in page.items],
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
        paths = mask_paths(request.update_mask, pm.MUTABLE)
        fields: dict[str, Any] = {name: pm.optional(p, name) for name in pm.SCOPE if name in paths}
        if "name" in paths:
            v.require(p.name.strip(), "policy.name")
            fields["name"] = p.name
        if "mode" in paths:
            fields["mode"] = pm.mode_of(p, v, default=None)
        if "priority" in paths:
            fields["priority"] = p.priority
        if "enabled" in paths:
            fields["enabled"] = p.enabled
        if paths & {"config", "app_id", "environment"}:
            stored = await self._repo.get(p.id)
            scope = {"app_id": stored.app_id, "environment": stored.environment, **fields}
            if "app_id" in paths or "environment" in paths:
                pm.check_scope(None, scope["app_id"], scope["environment"], v)
        if "config" in paths:
            if p.type and p.type != stored.type:
                v.add("policy.type", "is fixed at creation; create a new policy instead")
            fields["config"] = pm.config_of(pb.Policy(type=stored.type, config=p.config), v)
        v.check()
        updated = await self._repo.update(p.id, version=p.version, **fields)
        return pb.UpdatePolicyResponse(policy=pm.policy_message(updated))

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
            phase = pm.PHASES.get(e.phase)
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
            definition = pm.stored_definition(await self._repo.get(request.policy_id))
        else:
            definition = pm.definition(request.policy, v)
        pre, post = pm.contexts(request)
        if request.counter_used < 0:
            v.add("counter_used", "must not be negative")
            v.check()
        outcome = policy_check.evaluate(
            definition,
            pre,
            post,
            deployment=await self._deployment(pre.model),
            counter_used=request.counter_used,
            now=self._clock(),
        )
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
