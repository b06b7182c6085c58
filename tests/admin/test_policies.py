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
