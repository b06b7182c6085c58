"""The model catalog from Postgres: a mapping refreshed periodically and on change."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from decimal import Decimal

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.store.records import Model

log = logging.getLogger(__name__)


def deployment_from(model: Model) -> ModelDeployment:
    return ModelDeployment(
        name=model.name,
        provider=model.provider,
        upstream_model=model.upstream_model,
        # A model on an account goes to the account's cluster (named after it).
        route=model.account or model.upstream_cluster or None,
        context_window=model.context_window,
        input_price_per_mtok=_price(model.input_price_per_mtok),
        cached_input_price_per_mtok=_price(model.cached_input_price_per_mtok),
        output_price_per_mtok=_price(model.output_price_per_mtok),
        enabled=model.enabled,
        account=model.account,
        price_version=model.price_version,
        azure_deployment=model.azure_deployment,
        api_version=model.api_version,
        unit_price_usd=_price(model.unit_price_usd),
        image_prices=tuple(
            sorted((key, float(Decimal(str(value)))) for key, value in model.image_prices.items())
        ),
        cache_write_5m_price_per_mtok=_price(model.cache_write_5m_price_per_mtok),
        cache_write_1h_price_per_mtok=_price(model.cache_write_1h_price_per_mtok),
        long_context_threshold_tokens=model.long_context_threshold_tokens,
        long_context_input_price_per_mtok=_price(model.long_context_input_price_per_mtok),
        long_context_cached_input_price_per_mtok=_price(
            model.long_context_cached_input_price_per_mtok
        ),
        long_context_output_price_per_mtok=_price(model.long_context_output_price_per_mtok),
    )


def _price(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class ModelCatalog(Mapping[str, ModelDeployment]):
    """Read on the hot path (a dict lookup); ``refresh`` swaps the whole dict."""

    def __init__(self, load: Callable[[], Awaitable[Sequence[Model]]]) -> None:
        self._load = load
        self._models: dict[str, ModelDeployment] = {}

    async def refresh(self) -> None:
        try:
            models = await self._load()
        except Exception as exc:  # keep serving the last good catalog
            log.warning("could not refresh the model catalog: %s", exc)
            return
        self._models = {m.name: deployment_from(m) for m in models}

    def __getitem__(self, name: str) -> ModelDeployment:
        return self._models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)
