"""AccountService, and models that refer to an account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from policy_sidecar.admin import start_admin_server
from policy_sidecar.admin.v1 import accounts_pb2 as pb
from policy_sidecar.admin.v1 import accounts_pb2_grpc
from policy_sidecar.admin.v1 import models_pb2 as mpb
from policy_sidecar.envoy.upstreams import secret_file_text
from policy_sidecar.store.postgres import Pool

from .conftest import TOKENS, Client
from .helpers import AUTH, READ, fails, field_violations

pytestmark = pytest.mark.postgres

OPENAI = pb.Account(
    name="openai-prod",
    provider="openai",
    base_host="api.openai.com",
    credential_ref="openai-prod-key",
    tokens_per_minute=2_000_000,
    requests_per_minute=5_000,
    enabled=True,
)


@pytest.fixture
def accounts(client: Client) -> accounts_pb2_grpc.AccountServiceStub:
    return accounts_pb2_grpc.AccountServiceStub(client.channel)


async def test_crud(accounts: accounts_pb2_grpc.AccountServiceStub, publisher) -> None:
    created = (
        await accounts.CreateAccount(pb.CreateAccountRequest(account=OPENAI), metadata=AUTH)
    ).account
    assert created.id.startswith("acc_")
    assert (created.port, created.version, created.tokens_per_minute) == (443, 1, 2_000_000)
    by_name = await accounts.GetAccount(pb.GetAccountRequest(id="openai-prod"), metadata=READ)
    assert by_name.account == created
    updated = (
        await accounts.UpdateAccount(
            pb.UpdateAccountRequest(
                account=pb.Account(id=created.id, version=1, tokens_per_minute=0, name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["tokens_per_minute"]),
            ),
            metadata=AUTH,
        )
    ).account
    assert (updated.tokens_per_minute, updated.name, updated.version) == (0, "openai-prod", 2)
    listed = await accounts.ListAccounts(pb.ListAccountsRequest(), metadata=READ)
    assert [a.id for a in listed.accounts] == [created.id]
    # Readonly tokens read, never write.
    denied = await fails(
        accounts.CreateAccount(pb.CreateAccountRequest(account=OPENAI), metadata=READ)
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    # The name is immutable (the cluster name, what models refer to).
    immutable = await fails(
        accounts.UpdateAccount(
            pb.UpdateAccountRequest(
                account=pb.Account(id=created.id, version=2, name="other"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=AUTH,
        )
    )
    assert "update_mask.paths" in field_violations(immutable)
    await accounts.DeleteAccount(pb.DeleteAccountRequest(id=created.id, version=2), metadata=AUTH)
    assert [c.kind for c in publisher.changes] == ["provider_account"] * 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Openai_Prod"}, "account.name"),
        ({"name": ""}, "account.name"),
        ({"provider": "acme"}, "account.provider"),
        ({"base_host": "https://api.openai.com/v1"}, "account.base_host"),
        ({"credential_ref": "sk-proj-abc def"}, "account.credential_ref"),
        ({"credential_ref": "../../etc/shadow"}, "account.credential_ref"),
        ({"credential_ref": ""}, "account.credential_ref"),
        ({"port": 70000}, "account.port"),
        ({"ca_file": "ca.pem"}, "account.ca_file"),
        ({"tokens_per_minute": -1}, "account.tokens_per_minute"),
    ],
)
async def test_invalid_fields_are_named(
    accounts: accounts_pb2_grpc.AccountServiceStub, change: dict[str, object], field: str
) -> None:
    account = pb.Account()
    account.CopyFrom(OPENAI)
    for key, value in change.items():
        setattr(account, key, value)
    exc = await fails(
        accounts.CreateAccount(pb.CreateAccountRequest(account=account), metadata=AUTH)
    )
    violations = field_violations(exc)
    assert list(violations) == [field], violations
    # A rejected value (perhaps a pasted key) is never echoed back.
    for value in change.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in exc.details()


async def test_models_refer_to_accounts(
    client: Client, accounts: accounts_pb2_grpc.AccountServiceStub
) -> None:
    await accounts.CreateAccount(pb.CreateAccountRequest(account=OPENAI), metadata=AUTH)
    model = mpb.Model(name="gpt-4o", provider="openai", upstream_model="gpt-4o", account="ghost")
    unknown = await fails(
        client.models.CreateModel(mpb.CreateModelRequest(model=model), metadata=AUTH)
    )
    assert list(field_violations(unknown)) == ["model.account"]
    model.account = "openai-prod"
    model.provider = "anthropic"
    mismatch = await fails(
        client.models.CreateModel(mpb.CreateModelRequest(model=model), metadata=AUTH)
    )
    assert list(field_violations(mismatch)) == ["model.account"]
    model.provider = "openai"
    # No upstream_cluster needed: the account's cluster serves the model.
    created = (
        await client.models.CreateModel(mpb.CreateModelRequest(model=model), metadata=AUTH)
    ).model
    assert (created.account, created.upstream_cluster) == ("openai-prod", "")
    no_route = await fails(
        client.models.CreateModel(
            mpb.CreateModelRequest(
                model=mpb.Model(name="m", provider="openai", upstream_model="m")
            ),
            metadata=AUTH,
        )
    )
    assert list(field_violations(no_route)) == ["model.upstream_cluster"]
    account = (
        await accounts.GetAccount(pb.GetAccountRequest(id="openai-prod"), metadata=READ)
    ).account
    in_use = await fails(
        accounts.DeleteAccount(pb.DeleteAccountRequest(id=account.id, version=1), metadata=AUTH)
    )
    assert in_use.code() == grpc.StatusCode.FAILED_PRECONDITION
    moved = await fails(
        client.models.UpdateModel(
            mpb.UpdateModelRequest(
                model=mpb.Model(id=created.id, version=1, account="ghost"),
                update_mask=field_mask_pb2.FieldMask(paths=["account"]),
            ),
            metadata=AUTH,
        )
    )
    assert list(field_violations(moved)) == ["model.account"]


@pytest.fixture
async def with_credentials_dir(
    pool: Pool, tmp_path: Path
) -> AsyncIterator[accounts_pb2_grpc.AccountServiceStub]:
    (tmp_path / "openai-prod-key.yaml").write_text(secret_file_text("openai-prod-key", "sk-t"))
    server = await start_admin_server(pool=pool, tokens=TOKENS, credentials_dir=tmp_path)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield accounts_pb2_grpc.AccountServiceStub(channel)
    finally:
        await server.server.stop(None)


async def test_credentials_dir_refuses_unknown_references(
    with_credentials_dir: accounts_pb2_grpc.AccountServiceStub,
) -> None:
    stub = with_credentials_dir
    await stub.CreateAccount(pb.CreateAccountRequest(account=OPENAI), metadata=AUTH)
    other = pb.Account()
    other.CopyFrom(OPENAI)
    other.name, other.credential_ref = "openai-dev", "openai-dev-key"
    exc = await fails(stub.CreateAccount(pb.CreateAccountRequest(account=other), metadata=AUTH))
    assert field_violations(exc) == {
        "account.credential_ref": (
            "unknown credential reference: no such secret in the credentials directory"
        )
    }
