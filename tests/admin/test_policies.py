from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from policy_sidecar.admin.v1 import policies_pb2 as pb

from .conftest import Client
from .helpers import AUTH, READ, fails, field_violations

pytestmark = pytest.mark.postgres


def doc(**values: object) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


ALLOWLIST = pb.Policy(
    name="allowed models", type="model_allowlist", config=doc(models=["gpt-4o-mini", "gpt-4o*"])
)


async def create(client: Client, policy: pb.Policy) -> pb.Policy:
    return (
        await client.policies.CreatePolicy(pb.CreatePolicyRequest(policy=policy), metadata=AUTH)
    ).policy


async def test_crud_with_update_mask_and_conflict(client: Client, publisher) -> None:
    created = await create(client, ALLOWLIST)
    assert created.mode == pb.POLICY_MODE_ENFORCE and created.enabled
    assert not created.HasField("app_id")
    assert list(created.config["models"]) == ["gpt-4o-mini", "gpt-4o*"]
    change = pb.Policy(
        id=created.id,
        version=created.version,
        mode=pb.POLICY_MODE_SHADOW,
        model_pattern="gpt-*",
        config=doc(models=["x"]),
    )
    updated = (
        await client.policies.UpdatePolicy(
            pb.UpdatePolicyRequest(
                policy=change, update_mask=field_mask_pb2.FieldMask(paths=["mode", "model_pattern"])
            ),
            metadata=AUTH,
        )
    ).policy
    assert (updated.mode, updated.model_pattern, updated.version) == (
        pb.POLICY_MODE_SHADOW,
        "gpt-*",
        2,
    )
    assert list(updated.config["models"]) == ["gpt-4o-mini", "gpt-4o*"]
    # Clearing a scope field: in the mask, unset in the message.
    cleared = (
        await client.policies.UpdatePolicy(
            pb.UpdatePolicyRequest(
                policy=pb.Policy(id=created.id, version=2),
                update_mask=field_mask_pb2.FieldMask(paths=["model_pattern"]),
            ),
            metadata=AUTH,
        )
    ).policy
    assert not cleared.HasField("model_pattern")
    stale = await fails(
        client.policies.UpdatePolicy(
            pb.UpdatePolicyRequest(
                policy=change, update_mask=field_mask_pb2.FieldMask(paths=["mode"])
            ),
            metadata=AUTH,
        )
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    bad_config = await fails(
        client.policies.UpdatePolicy(
            pb.UpdatePolicyRequest(
                policy=pb.Policy(id=created.id, version=3, config=doc(models=[])),
                update_mask=field_mask_pb2.FieldMask(paths=["config"]),
            ),
            metadata=AUTH,
        )
    )
    assert list(field_violations(bad_config)) == ["policy.config.models"]
    listed = await client.policies.ListPolicies(
        pb.ListPoliciesRequest(type="model_allowlist"), metadata=READ
    )
    assert [p.id for p in listed.policies] == [created.id]
    await client.policies.DeletePolicy(
        pb.DeletePolicyRequest(id=created.id, version=3), metadata=AUTH
    )
    gone = await fails(client.policies.GetPolicy(pb.GetPolicyRequest(id=created.id), metadata=READ))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert [(c.kind, c.action) for c in publisher.changes] == [("policy", "created")] + [
        ("policy", "updated")
    ] * 2 + [("policy", "deleted")]


@pytest.mark.parametrize(
    ("policy", "violations"),
    [
        (pb.Policy(), {"policy.name", "policy.type"}),
        (pb.Policy(name="p", type="nope", config=doc()), {"policy.type"}),
        (pb.Policy(name="p", type="request_size", config=doc()), {"policy.config.max_bytes"}),
        (
            pb.Policy(name="p", type="request_size", config=doc(max_bytes=0)),
            {"policy.config.max_bytes"},
        ),
        (
            pb.Policy(name="p", type="request_size", config=doc(max_bytes=1.5)),
            {"policy.config.max_bytes"},
        ),
        (
            pb.Policy(name="p", type="request_size", config=doc(max_bytes=10, extra=1)),
            {"policy.config.extra"},
        ),
        (
            pb.Policy(name="p", type="model_allowlist", config=doc(models=[])),
            {"policy.config.models"},
        ),
    ],
)
async def test_create_violations(client: Client, policy: pb.Policy, violations: set[str]) -> None:
    exc = await fails(
        client.policies.CreatePolicy(pb.CreatePolicyRequest(policy=policy), metadata=AUTH)
    )
    assert set(field_violations(exc)) == violations


async def test_unknown_scope_app_is_invalid(client: Client) -> None:
    policy = pb.Policy(
        name="p", type="request_size", config=doc(max_bytes=10), app_id="app_missing"
    )
    exc = await fails(
        client.policies.CreatePolicy(pb.CreatePolicyRequest(policy=policy), metadata=AUTH)
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT


def _config(type_: str, **config: object) -> pb.ValidatePolicyRequest:
    return pb.ValidatePolicyRequest(config=pb.PolicyConfig(type=type_, config=doc(**config)))


def _cel(source: str, phase: int = pb.PHASE_PRE_REQUEST) -> pb.ValidatePolicyRequest:
    return pb.ValidatePolicyRequest(expression=pb.CelExpression(source=source, phase=phase))


@pytest.mark.parametrize(
    ("request_", "errors"),
    [
        (_config("request_size", max_bytes=100), []),
        (_config("request_size", max_bytes=-1), [("config.config.max_bytes", 0, 0)]),
        (_config("nope"), [("config.type", 0, 0)]),
        (pb.ValidatePolicyRequest(config=pb.PolicyConfig()), [("config.type", 0, 0)]),
        (_cel('model.startsWith("gpt-4o") && estimated_tokens < 4000'), []),
        (_cel("total_tokens > 1000", pb.PHASE_POST_REQUEST), []),
        # A post-request variable is unknown before the request.
        (_cel("total_tokens > 1000"), [("expression.source", 1, 1)]),
        (_cel("estimated_tokens < 10 &&\n  model > 3"), [("expression.source", 2, 9)]),
    ],
)
async def test_validate(client: Client, request_: pb.ValidatePolicyRequest, errors: list) -> None:
    response = await client.policies.ValidatePolicy(request_, metadata=AUTH)
    assert response.valid is (not errors)
    assert [(e.field, e.line, e.column) for e in response.errors] == errors
    assert all(e.message for e in response.errors)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ValidatePolicyRequest(), "target"),
        (pb.ValidatePolicyRequest(expression=pb.CelExpression(source="true")), "expression.phase"),
    ],
)
async def test_validate_bad_requests(
    client: Client, request_: pb.ValidatePolicyRequest, field: str
) -> None:
    exc = await fails(client.policies.ValidatePolicy(request_, metadata=AUTH))
    assert list(field_violations(exc)) == [field]


SAMPLE = pb.SampleRequest(
    model="gpt-4o-mini", org_id="acme", app_id="app_1", environment="prod", request_size_bytes=500
)


def _sample(**changes: object) -> pb.SampleRequest:
    s = pb.SampleRequest()
    s.CopyFrom(SAMPLE)
    for k, v in changes.items():
        setattr(s, k, v)
    return s


SIZE = pb.Policy(name="small", type="request_size", config=doc(max_bytes=1000))


def _with(policy: pb.Policy, **changes: object) -> pb.Policy:
    p = pb.Policy()
    p.CopyFrom(policy)
    for k, v in changes.items():
        setattr(p, k, v)
    return p


@pytest.mark.parametrize(
    ("policy", "sample", "verdict", "applies", "code"),
    [
        (ALLOWLIST, SAMPLE, pb.VERDICT_ALLOW, True, ""),
        (ALLOWLIST, _sample(model="gpt-4o-2024"), pb.VERDICT_ALLOW, True, ""),
        (ALLOWLIST, _sample(model="claude"), pb.VERDICT_DENY, True, "model_not_allowed"),
        (
            _with(ALLOWLIST, mode=pb.POLICY_MODE_SHADOW),
            _sample(model="claude"),
            pb.VERDICT_ALLOW,
            True,
            "model_not_allowed",
        ),
        (_with(ALLOWLIST, app_id="app_2"), _sample(model="claude"), pb.VERDICT_ALLOW, False, ""),
        (
            _with(ALLOWLIST, model_pattern="claude*"),
            _sample(model="gpt-5"),
            pb.VERDICT_ALLOW,
            False,
            "",
        ),
        (_with(ALLOWLIST, enabled=False), _sample(model="claude"), pb.VERDICT_ALLOW, False, ""),
        (SIZE, SAMPLE, pb.VERDICT_ALLOW, True, ""),
        (SIZE, _sample(request_size_bytes=5000), pb.VERDICT_DENY, True, "request_too_large"),
    ],
)
async def test_test_policy_inline(
    client: Client,
    policy: pb.Policy,
    sample: pb.SampleRequest,
    verdict: int,
    applies: bool,
    code: str,
) -> None:
    response = await client.policies.TestPolicy(
        pb.TestPolicyRequest(policy=policy, request=sample), metadata=AUTH
    )
    assert (response.verdict, response.applies, response.violation.code) == (verdict, applies, code)
    assert response.reason
    if code:
        assert response.violation.http_status in (403, 413)
        assert response.shadow == (policy.mode == pb.POLICY_MODE_SHADOW)


async def test_test_stored_policy(client: Client) -> None:
    stored = await create(client, SIZE)
    response = await client.policies.TestPolicy(
        pb.TestPolicyRequest(policy_id=stored.id, request=_sample(request_size_bytes=2000)),
        metadata=AUTH,
    )
    assert response.verdict == pb.VERDICT_DENY
    assert response.violation.details["policy_id"] == stored.id
    assert response.violation.details["limit"] == 1000
    missing = await fails(
        client.policies.TestPolicy(
            pb.TestPolicyRequest(policy_id="pol_x", request=SAMPLE), metadata=AUTH
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "violations"),
    [
        (pb.TestPolicyRequest(), {"request.model", "policy_source"}),
        (
            pb.TestPolicyRequest(policy=pb.Policy(type="request_size"), request=SAMPLE),
            {"policy.config.max_bytes"},
        ),
    ],
)
async def test_test_policy_violations(
    client: Client, request_: pb.TestPolicyRequest, violations: set[str]
) -> None:
    exc = await fails(client.policies.TestPolicy(request_, metadata=AUTH))
    assert set(field_violations(exc)) == violations
