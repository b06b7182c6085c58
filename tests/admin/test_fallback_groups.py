"""FallbackGroupService: validated like render-envoy's accounts file, audited, published;
and what it asks of accounts and models."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import field_mask_pb2

from policy_sidecar.admin.v1 import accounts_pb2 as apb
from policy_sidecar.admin.v1 import accounts_pb2_grpc, audit_pb2, audit_pb2_grpc
from policy_sidecar.admin.v1 import fallback_groups_pb2 as pb
from policy_sidecar.admin.v1 import fallback_groups_pb2_grpc as grpc_pb
from policy_sidecar.admin.v1 import models_pb2 as mpb

from .conftest import Client
from .helpers import AUTH, READ, fails, field_violations

pytestmark = pytest.mark.postgres

SERVICE = "/policy_sidecar.admin.v1.FallbackGroupService/"


def account(name: str, provider: str = "openai", *, enabled: bool = True) -> apb.Account:
    host = {"openai": "api.openai.com", "anthropic": "api.anthropic.com"}[provider]
    return apb.Account(
        name=name, provider=provider, base_host=host, credential_ref=name, enabled=enabled
    )


@pytest.fixture
async def stubs(client: Client) -> tuple[grpc_pb.FallbackGroupServiceStub, Client]:
    accounts = accounts_pb2_grpc.AccountServiceStub(client.channel)
    for acc in (
        account("openai-prod"),
        account("openai-spare"),
        account("openai-off", enabled=False),
        account("claude", "anthropic"),
    ):
        await accounts.CreateAccount(apb.CreateAccountRequest(account=acc), metadata=AUTH)
    return grpc_pb.FallbackGroupServiceStub(client.channel), client


def group(name: str, *accounts: str) -> pb.CreateFallbackGroupRequest:
    return pb.CreateFallbackGroupRequest(
        fallback_group=pb.FallbackGroup(name=name, accounts=list(accounts))
    )


async def test_crud_audited_and_published(
    stubs: tuple[grpc_pb.FallbackGroupServiceStub, Client], publisher
) -> None:
    groups, client = stubs
    created = (
        await groups.CreateFallbackGroup(
            group("openai-any", "openai-prod", "openai-spare"), metadata=AUTH
        )
    ).fallback_group
    assert created.id.startswith("fbg_")
    assert (list(created.accounts), created.version) == (["openai-prod", "openai-spare"], 1)
    by_name = await groups.GetFallbackGroup(
        pb.GetFallbackGroupRequest(id="openai-any"), metadata=READ
    )
    by_id = await groups.GetFallbackGroup(pb.GetFallbackGroupRequest(id=created.id), metadata=READ)
    assert by_name.fallback_group == by_id.fallback_group == created
    updated = (
        await groups.UpdateFallbackGroup(
            pb.UpdateFallbackGroupRequest(
                fallback_group=pb.FallbackGroup(
                    id=created.id, version=1, accounts=["openai-spare", "openai-prod"]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["accounts"]),
            ),
            metadata=AUTH,
        )
    ).fallback_group
    assert (list(updated.accounts), updated.version) == (["openai-spare", "openai-prod"], 2)
    listed = await groups.ListFallbackGroups(pb.ListFallbackGroupsRequest(), metadata=READ)
    assert [g.id for g in listed.fallback_groups] == [created.id]
    denied = await fails(
        groups.CreateFallbackGroup(group("x", "openai-prod", "openai-spare"), metadata=READ)
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    await groups.DeleteFallbackGroup(
        pb.DeleteFallbackGroupRequest(id=created.id, version=2), metadata=AUTH
    )
    gone = await fails(
        groups.GetFallbackGroup(pb.GetFallbackGroupRequest(id=created.id), metadata=READ)
    )
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert [c.kind for c in publisher.changes if c.kind == "fallback_group"] == [
        "fallback_group"
    ] * 3
    audit = audit_pb2_grpc.AuditServiceStub(client.channel)
    events = (
        await audit.ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(object_type="fallback_group"), metadata=READ
        )
    ).events
    assert [(e.action, e.method, e.object_id) for e in events] == [
        ("delete", SERVICE + "DeleteFallbackGroup", created.id),
        ("update", SERVICE + "UpdateFallbackGroup", created.id),
        ("create", SERVICE + "CreateFallbackGroup", created.id),
    ]
    assert json.loads(events[1].after_json)["accounts"] == ["openai-spare", "openai-prod"]


@pytest.mark.parametrize(
    ("name", "accounts", "field", "problem"),
    [
        ("", ["openai-prod", "openai-spare"], "fallback_group.name", "required"),
        ("Openai_Any", ["openai-prod", "openai-spare"], "fallback_group.name", "must match"),
        ("openai-prod", ["openai-prod", "openai-spare"], "fallback_group.name", "account's name"),
        ("g", ["openai-prod"], "fallback_group.accounts", "two or more distinct"),
        ("g", ["openai-prod", "openai-prod"], "fallback_group.accounts", "two or more distinct"),
        ("g", ["openai-prod", "ghost"], "fallback_group.accounts", "'ghost' (unknown account)"),
        ("g", ["openai-prod", "openai-off"], "fallback_group.accounts", "(it is disabled)"),
        ("g", ["openai-prod", "claude"], "fallback_group.accounts", "of one provider"),
    ],
)
async def test_invalid_groups_are_refused_naming_the_field(
    stubs: tuple[grpc_pb.FallbackGroupServiceStub, Client],
    name: str,
    accounts: list[str],
    field: str,
    problem: str,
) -> None:
    groups, _ = stubs
    exc = await fails(groups.CreateFallbackGroup(group(name, *accounts), metadata=AUTH))
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(exc)
    assert list(violations) == [field], violations
    assert problem in violations[field]


async def test_an_update_is_validated_too(
    stubs: tuple[grpc_pb.FallbackGroupServiceStub, Client],
) -> None:
    groups, _ = stubs
    created = (
        await groups.CreateFallbackGroup(
            group("openai-any", "openai-prod", "openai-spare"), metadata=AUTH
        )
    ).fallback_group
    exc = await fails(
        groups.UpdateFallbackGroup(
            pb.UpdateFallbackGroupRequest(
                fallback_group=pb.FallbackGroup(
                    id=created.id, version=1, accounts=["openai-prod", "claude"]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["accounts"]),
            ),
            metadata=AUTH,
        )
    )
    assert list(field_violations(exc)) == ["fallback_group.accounts"]


async def test_accounts_of_a_group_stay_valid_for_it(
    stubs: tuple[grpc_pb.FallbackGroupServiceStub, Client],
) -> None:
    groups, client = stubs
    accounts = accounts_pb2_grpc.AccountServiceStub(client.channel)
    await groups.CreateFallbackGroup(
        group("openai-any", "openai-prod", "openai-spare"), metadata=AUTH
    )
    prod = (
        await accounts.GetAccount(apb.GetAccountRequest(id="openai-prod"), metadata=READ)
    ).account
    for paths, change, field in (
        (["enabled"], apb.Account(enabled=False), "account.enabled"),
        (["provider"], apb.Account(provider="anthropic"), "account.provider"),
    ):
        change.id, change.version = prod.id, prod.version
        exc = await fails(
            accounts.UpdateAccount(
                apb.UpdateAccountRequest(
                    account=change, update_mask=field_mask_pb2.FieldMask(paths=paths)
                ),
                metadata=AUTH,
            )
        )
        assert list(field_violations(exc)) == [field]
        assert "openai-any" in field_violations(exc)[field]
    in_group = await fails(
        accounts.DeleteAccount(
            apb.DeleteAccountRequest(id=prod.id, version=prod.version), metadata=AUTH
        )
    )
    assert in_group.code() == grpc.StatusCode.FAILED_PRECONDITION
    # An account may not take a group's name: both are Envoy cluster names.
    taken = await fails(
        accounts.CreateAccount(
            apb.CreateAccountRequest(account=account("openai-any")), metadata=AUTH
        )
    )
    assert list(field_violations(taken)) == ["account.name"]
    # Other changes to a member are fine.
    await accounts.UpdateAccount(
        apb.UpdateAccountRequest(
            account=apb.Account(id=prod.id, version=prod.version, tokens_per_minute=1000),
            update_mask=field_mask_pb2.FieldMask(paths=["tokens_per_minute"]),
        ),
        metadata=AUTH,
    )


async def test_models_route_to_a_group_of_their_provider(
    stubs: tuple[grpc_pb.FallbackGroupServiceStub, Client],
) -> None:
    groups, client = stubs
    created = (
        await groups.CreateFallbackGroup(
            group("openai-any", "openai-prod", "openai-spare"), metadata=AUTH
        )
    ).fallback_group
    model = mpb.Model(
        name="claude-x",
        provider="anthropic",
        upstream_model="claude-x",
        upstream_cluster="openai-any",
    )
    mismatch = await fails(
        client.models.CreateModel(mpb.CreateModelRequest(model=model), metadata=AUTH)
    )
    assert list(field_violations(mismatch)) == ["model.upstream_cluster"]
    model.name, model.provider, model.upstream_model = "gpt-4o", "openai", "gpt-4o"
    routed = (
        await client.models.CreateModel(mpb.CreateModelRequest(model=model), metadata=AUTH)
    ).model
    assert routed.upstream_cluster == "openai-any"
    # A group a model routes to is not deleted from under it.
    in_use = await fails(
        groups.DeleteFallbackGroup(
            pb.DeleteFallbackGroupRequest(id=created.id, version=1), metadata=AUTH
        )
    )
    assert in_use.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "gpt-4o" in in_use.details()
