"""Provider accounts in Postgres: CRUD, constraints, models referring to them."""

from __future__ import annotations

import pytest

from policy_sidecar.store.postgres import (
    AccountRepository,
    AlreadyExistsError,
    InvalidError,
    ModelRepository,
    NotFoundError,
    Pool,
    VersionConflictError,
)
from policy_sidecar.store.postgres.errors import InUseError

from .helpers import RecordingPublisher

pytestmark = pytest.mark.postgres


@pytest.fixture
def accounts(pool: Pool, publisher: RecordingPublisher) -> AccountRepository:
    return AccountRepository(pool, publisher)


async def test_crud_and_invalidation(
    accounts: AccountRepository, publisher: RecordingPublisher
) -> None:
    acc = await accounts.create(
        name="openai-prod",
        provider="openai",
        base_host="api.openai.com",
        credential_ref="openai-prod-key",
        tokens_per_minute=1_000_000,
    )
    assert (acc.port, acc.version, acc.requests_per_minute, acc.enabled) == (443, 1, None, True)
    assert acc.id.startswith("acc_")
    assert await accounts.get_by_name("openai-prod") == acc
    assert await accounts.exists("openai-prod") and not await accounts.exists("nope")
    with pytest.raises(AlreadyExistsError):
        await accounts.create(
            name="openai-prod", provider="openai", base_host="h", credential_ref="k"
        )
    acc2 = await accounts.update(acc.id, version=1, requests_per_minute=500, ca_file="/ca.pem")
    assert (acc2.requests_per_minute, acc2.ca_file, acc2.version) == (500, "/ca.pem", 2)
    with pytest.raises(VersionConflictError):
        await accounts.update(acc.id, version=1, enabled=False)
    await accounts.delete(acc.id, version=2)
    with pytest.raises(NotFoundError):
        await accounts.get(acc.id)
    assert [(c.kind, c.action) for c in publisher.changes] == [
        ("provider_account", "created"),
        ("provider_account", "updated"),
        ("provider_account", "deleted"),
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Bad_Name"),
        ("name", "-leading"),
        ("provider", "nope"),
        ("base_host", "https://api.openai.com"),
        ("credential_ref", "../etc/passwd"),
        ("credential_ref", "sk-with space"),
        ("port", 0),
        ("tokens_per_minute", 0),
        ("ca_file", "relative.pem"),
    ],
)
async def test_constraints_name_the_column(
    accounts: AccountRepository, field: str, value: object
) -> None:
    fields: dict[str, object] = {
        "name": "acc",
        "provider": "openai",
        "base_host": "api.openai.com",
        "credential_ref": "key",
    }
    fields[field] = value
    with pytest.raises(InvalidError) as info:
        await accounts.create(**fields)  # type: ignore[arg-type]
    assert field in info.value.field
    assert str(value) not in str(info.value)


async def test_keyset_pages(accounts: AccountRepository) -> None:
    for i in range(5):
        await accounts.create(
            name=f"acc-{i}", provider="anthropic", base_host="api.anthropic.com", credential_ref="k"
        )
    seen: list[str] = []
    token = None
    while True:
        page = await accounts.list(provider="anthropic", page_size=2, page_token=token)
        seen += [a.name for a in page.items]
        token = page.next_page_token
        if token is None:
            break
    assert sorted(seen) == [f"acc-{i}" for i in range(5)]


async def test_models_refer_to_accounts(pool: Pool, accounts: AccountRepository) -> None:
    models = ModelRepository(pool)
    acc = await accounts.create(
        name="azure-eu", provider="azure", base_host="x.openai.azure.com", credential_ref="k"
    )
    model = await models.create(
        name="gpt-4o",
        provider="azure",
        upstream_model="gpt-4o",
        upstream_cluster="",
        account="azure-eu",
    )
    assert model.account == "azure-eu"
    with pytest.raises(InvalidError):
        await models.create(
            name="m2", provider="openai", upstream_model="m", upstream_cluster="", account="ghost"
        )
    with pytest.raises(InvalidError):  # neither an account nor a cluster: no route
        await models.create(name="m3", provider="openai", upstream_model="m", upstream_cluster="")
    with pytest.raises(InUseError):
        await accounts.delete(acc.id)
    await models.update(model.id, version=model.version, account=None, upstream_cluster="c")
    await accounts.delete(acc.id)
