"""Screen 3: the policy builder, its CEL editor's validation endpoint and the dry run."""

from __future__ import annotations

import json

from aiohttp import web
from google.protobuf import field_mask_pb2, json_format

from policy_sidecar.admin.v1 import policies_pb2
from policy_sidecar.console.admin_client import ApiError
from policy_sidecar.console.forms import FormErrors, field_errors, form_data
from policy_sidecar.console.policy_form import (
    CONFIG_FIELDS,
    POLICY_TYPES,
    form_of,
    policy_from,
    sample_from,
)
from policy_sidecar.console.render import render
from policy_sidecar.console.state import CLIENT_KEY, current_user

__all__ = ["add_routes"]

MUTABLE = ("name", "org_id", "app_id", "environment", "model_pattern", "mode", "priority",
           "enabled", "config")  # fmt: skip
PHASES = {"pre": policies_pb2.PHASE_PRE_REQUEST, "post": policies_pb2.PHASE_POST_REQUEST}
MAX_EXPRESSION_BYTES = 16 * 1024


def _errors(fields: dict[str, str]) -> FormErrors:
    return field_errors(fields, "policy.config.", "policy.", "config.")


async def list_policies(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    policy_type = request.query.get("type", "")
    found = await client.call(
        client.policies.ListPolicies,
        policies_pb2.ListPoliciesRequest(type=policy_type, page_size=500),
        user.token,
    )
    return render(
        request,
        "policies.html",
        policies=sorted(found.policies, key=lambda p: (p.priority, p.id)),
        types=POLICY_TYPES,
        selected=policy_type,
    )


def _builder(
    request: web.Request,
    form: dict[str, str],
    *,
    policy: policies_pb2.Policy | None = None,
    errors: FormErrors | None = None,
) -> web.Response:
    return render(
        request,
        "policy.html",
        status=400 if errors else 200,
        form=form,
        policy=policy,
        types=POLICY_TYPES,
        fields=CONFIG_FIELDS,
        errors=errors or {},
    )


async def new_policy(request: web.Request) -> web.StreamResponse:
    policy_type = request.query.get("type", "model_allowlist")
    if policy_type not in POLICY_TYPES:
        policy_type = "model_allowlist"
    defaults = {
        "type": policy_type,
        "mode": "enforce",
        "priority": "100",
        "enabled": "on",
        "rate_limit.window": "1m",
        "token_limit.window": "1d",
        "token_limit.count": "total",
    }
    return _builder(request, defaults)


async def create_policy(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    form = dict(await form_data(request))
    try:
        created = await client.call(
            client.policies.CreatePolicy,
            policies_pb2.CreatePolicyRequest(policy=policy_from(form)),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields:
            raise
        return _builder(request, form, errors=_errors(exc.fields))
    raise web.HTTPSeeOther(f"/policies/{created.policy.id}")


async def _get(request: web.Request) -> policies_pb2.Policy:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    got: policies_pb2.GetPolicyResponse = await client.call(
        client.policies.GetPolicy,
        policies_pb2.GetPolicyRequest(id=request.match_info["policy_id"]),
        user.token,
    )
    return got.policy


async def show_policy(request: web.Request) -> web.StreamResponse:
    policy = await _get(request)
    return _builder(request, form_of(policy), policy=policy)


async def update_policy(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    form = dict(await form_data(request))
    policy_id = request.match_info["policy_id"]
    current = await _get(request)
    form["type"] = current.type  # fixed at creation
    try:
        await client.call(
            client.policies.UpdatePolicy,
            policies_pb2.UpdatePolicyRequest(
                policy=policy_from(form, policy_id=policy_id),
                update_mask=field_mask_pb2.FieldMask(paths=list(MUTABLE)),
            ),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields:
            raise
        return _builder(request, form, policy=current, errors=_errors(exc.fields))
    raise web.HTTPSeeOther(f"/policies/{policy_id}")


async def delete_policy(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    form = dict(await form_data(request))
    await client.call(
        client.policies.DeletePolicy,
        policies_pb2.DeletePolicyRequest(
            id=request.match_info["policy_id"], version=int(form.get("version", "0") or 0)
        ),
        user.token,
    )
    raise web.HTTPSeeOther("/policies")


async def dry_run(request: web.Request) -> web.StreamResponse:
    """TestPolicy on the form's (unsaved) policy and the sample; an htmx fragment."""
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    form = dict(await form_data(request))
    test = sample_from(form)
    test.policy.CopyFrom(policy_from(form))
    try:
        result = await client.call(client.policies.TestPolicy, test, user.token)
    except ApiError as exc:
        return render(
            request,
            "_dry_run.html",
            result=None,
            error=exc,
            errors=field_errors(exc.fields),
            details={},
        )
    details = {
        # Struct numbers are doubles: show whole ones as integers (counters, limits).
        k: int(v) if isinstance(v, float) and v.is_integer() else v
        for k, v in json_format.MessageToDict(result.violation.details).items()
    }
    return render(request, "_dry_run.html", result=result, error=None, errors={}, details=details)


async def validate_cel(request: web.Request) -> web.StreamResponse:
    """The CEL editor's lint: `{"source", "phase"}` -> `{"errors": [{line, column, message}]}`."""
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    try:
        body = json.loads(await request.text())
        source = body["source"]
        phase = PHASES[body.get("phase", "pre")]
        if not isinstance(source, str) or len(source.encode()) > MAX_EXPRESSION_BYTES:
            raise ValueError("source")
    except (ValueError, KeyError, TypeError):
        return web.json_response(
            {"error": "expected {source: string, phase: pre|post}"}, status=400
        )
    result = await client.call(
        client.policies.ValidatePolicy,
        policies_pb2.ValidatePolicyRequest(
            expression=policies_pb2.CelExpression(source=source, phase=phase)
        ),
        user.token,
    )
    return web.json_response(
        {
            "valid": result.valid,
            "errors": [
                {"line": e.line, "column": e.column, "message": e.message} for e in result.errors
            ],
        }
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/policies", list_policies)
    router.add_post("/policies", create_policy)
    router.add_get("/policies/new", new_policy)
    router.add_post("/policies/dry-run", dry_run)
    router.add_get("/policies/{policy_id}", show_policy)
    router.add_post("/policies/{policy_id}", update_policy)
    router.add_post("/policies/{policy_id}/delete", delete_policy)
    router.add_post("/cel/validate", validate_cel)
