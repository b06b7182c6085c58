from __future__ import annotations

from decimal import Decimal

import pytest

from policy_sidecar.store.model_catalog import deployment_from
from policy_sidecar.store.postgres import (
    AlreadyExistsError,
    InvalidError,
    ModelRepository,
    NotFoundError,
    Pool,
    VersionConflictError,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def models(pool: Pool) -> ModelRepository:
    return ModelRepository(pool)


async def _create(models: ModelRepository, name: str, provider: str = "openai") -> str:
    model = await models.create(
        name=name,
        provider=provider,
        upstream_model=f"{name}-2024",
        upstream_cluster=f"{provider}_cluster",
        context_window=128_000,
        input_price_per_mtok=Decimal("2.5"),
        output_price_per_mtok=Decimal("10"),
        cached_input_price_per_mtok=Decimal("1.25"),
    )
    return model.id


async def test_crud(models: ModelRepository) -> None:
    model_id = await _create(models, "gpt-4o")
    m = await models.get(model_id)
    assert (m.name, m.input_price_per_mtok, m.enabled, m.version) == (
        "gpt-4o",
        Decimal("2.5"),
        True,
        1,
    )
    assert await models.get_by_name("gpt-4o") == m
    with pytest.raises(AlreadyExistsError):
        await _create(models, "gpt-4o")
    m2 = await models.update(model_id, version=1, enabled=False, context_window=None)
    assert (m2.enabled, m2.context_window, m2.version) == (False, None, 2)
    with pytest.raises(VersionConflictError):
        await models.update(model_id, version=1, enabled=True)
    with pytest.raises(VersionConflictError):
        await models.delete(model_id, version=1)
    await models.delete(model_id, version=2)
    with pytest.raises(NotFoundError):
        await models.get_by_name("gpt-4o")


async def test_list_filters_and_pagination(models: ModelRepository) -> None:
    openai = sorted([await _create(models, f"o{i}") for i in range(3)])
    await _create(models, "claude", provider="anthropic")
    page = await models.list(provider="openai", page_size=3)
    assert [m.id for m in page.items] == openai
    assert page.next_page_token is None
    assert len((await models.list(enabled=True)).items) == 4
    assert (await models.list(enabled=False)).items == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"context_window": 0},
        {"input_price_per_mtok": Decimal(-1)},
        {"upstream_cluster": ""},
        # Azure fields: only on an azure model, and safe in a path and a query.
        {"api_version": "2024-10-21"},
        {"provider": "azure", "api_version": "2024&x=1"},
        {"provider": "azure", "azure_deployment": "a/b"},
    ],
)
async def test_invalid(models: ModelRepository, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "name": "m",
        "provider": "p",
        "upstream_model": "u",
        "upstream_cluster": "c",
        **kwargs,
    }
    with pytest.raises(InvalidError):
        await models.create(**args)  # type: ignore[arg-type]


async def test_a_price_never_set_is_null_unpriced_and_zero_is_free(
    models: ModelRepository,
) -> None:
    unpriced = await models.create(
        name="new", provider="openai", upstream_model="new", upstream_cluster="openai"
    )
    assert unpriced.input_price_per_mtok is None and unpriced.output_price_per_mtok is None
    d = deployment_from(unpriced)
    assert (d.input_price_per_mtok, d.output_price_per_mtok) == (None, None)
    free = await models.update(
        unpriced.id,
        version=1,
        input_price_per_mtok=Decimal(0),
        output_price_per_mtok=Decimal(0),
    )
    d = deployment_from(free)
    assert (d.input_price_per_mtok, d.output_price_per_mtok) == (0.0, 0.0)


async def test_an_azure_model_keeps_its_deployment_name_and_api_version(
    models: ModelRepository,
) -> None:
    model = await models.create(
        name="gpt-4o-eu",
        provider="azure",
        upstream_model="gpt-4o",
        upstream_cluster="azure-eu",
        azure_deployment="gpt4o-eu",
        api_version="2024-10-21",
    )
    d = deployment_from(model)
    assert (d.azure_deployment, d.api_version) == ("gpt4o-eu", "2024-10-21")
    cleared = await models.update(model.id, version=1, api_version=None)
    assert (cleared.azure_deployment, cleared.api_version) == ("gpt4o-eu", None)
