"""Model deployments provisioned by the platform team."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from policy_sidecar.store.invalidation import NoopPublisher, PolicyChange, PolicyChangePublisher
from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres._crud import UNSET, Unset
from policy_sidecar.store.postgres.audit import write_transaction
from policy_sidecar.store.postgres.errors import NotFoundError, translate_errors
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.records import Model, Page

__all__ = ["ModelRepository"]

_KIND = "model"


def _image_prices(prices: Mapping[str, Any]) -> Jsonb:
    """Image prices as stored: decimal text by "size/quality" (exact, unlike JSON floats)."""
    return Jsonb({key: format(Decimal(str(value)), "f") for key, value in prices.items()})


class ModelRepository:
    """`name` is the public model name or alias clients send; it is unique."""

    def __init__(self, pool: Pool, publisher: PolicyChangePublisher | None = None) -> None:
        self._pool = pool
        self._publisher = publisher or NoopPublisher()

    async def create(
        self,
        *,
        name: str,
        provider: str,
        upstream_model: str,
        upstream_cluster: str,
        context_window: int | None = None,
        input_price_per_mtok: Decimal | None = None,
        output_price_per_mtok: Decimal | None = None,
        cached_input_price_per_mtok: Decimal | None = None,
        enabled: bool = True,
        account: str | None = None,
        unit_price_usd: Decimal | None = None,
        image_prices: Mapping[str, Any] | None = None,
        cache_write_5m_price_per_mtok: Decimal | None = None,
        cache_write_1h_price_per_mtok: Decimal | None = None,
        long_context_threshold_tokens: int | None = None,
        long_context_input_price_per_mtok: Decimal | None = None,
        long_context_cached_input_price_per_mtok: Decimal | None = None,
        long_context_output_price_per_mtok: Decimal | None = None,
        azure_deployment: str | None = None,
        api_version: str | None = None,
    ) -> Model:
        columns: dict[str, Any] = {
            "name": name,
            "provider": provider,
            "upstream_model": upstream_model,
            "upstream_cluster": upstream_cluster,
            "context_window": context_window,
            "input_price_per_mtok": input_price_per_mtok,
            "output_price_per_mtok": output_price_per_mtok,
            "cached_input_price_per_mtok": cached_input_price_per_mtok,
            "enabled": enabled,
            "account": account,
            "unit_price_usd": unit_price_usd,
            "image_prices": _image_prices(image_prices or {}),
            "cache_write_5m_price_per_mtok": cache_write_5m_price_per_mtok,
            "cache_write_1h_price_per_mtok": cache_write_1h_price_per_mtok,
            "long_context_threshold_tokens": long_context_threshold_tokens,
            "long_context_input_price_per_mtok": long_context_input_price_per_mtok,
            "long_context_cached_input_price_per_mtok": long_context_cached_input_price_per_mtok,
            "long_context_output_price_per_mtok": long_context_output_price_per_mtok,
            "azure_deployment": azure_deployment,
            "api_version": api_version,
        }
        query = sql.SQL("INSERT INTO models ({}) VALUES ({}) RETURNING *").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                model = await _crud.fetch_one(conn, Model, query, tuple(columns.values()))
        assert model is not None
        await self._changed(model.id, "created", model.version)
        return model

    async def get(self, model_id: str) -> Model:
        return await self._get_by("id", model_id)

    async def get_by_name(self, name: str) -> Model:
        return await self._get_by("name", name)

    async def _get_by(self, column: str, value: str) -> Model:
        query = sql.SQL("SELECT * FROM models WHERE {} = %s").format(sql.Identifier(column))
        async with self._pool.connection() as conn:
            model = await _crud.fetch_one(conn, Model, query, (value,))
        if model is None:
            raise NotFoundError(_KIND, value)
        return model

    async def list(
        self,
        *,
        provider: str | None = None,
        enabled: bool | None = None,
        account: str | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> Page[Model]:
        async with self._pool.connection() as conn:
            return await _crud.list_page(
                conn,
                Model,
                kind=_KIND,
                table="models",
                filters={"provider": provider, "enabled": enabled, "account": account},
                page_size=page_size,
                page_token=page_token,
            )

    async def update(
        self,
        model_id: str,
        *,
        version: int,
        name: str | Unset = UNSET,
        provider: str | Unset = UNSET,
        upstream_model: str | Unset = UNSET,
        upstream_cluster: str | Unset = UNSET,
        context_window: int | Unset | None = UNSET,
        input_price_per_mtok: Decimal | Unset | None = UNSET,
        output_price_per_mtok: Decimal | Unset | None = UNSET,
        cached_input_price_per_mtok: Decimal | Unset | None = UNSET,
        enabled: bool | Unset = UNSET,
        account: str | Unset | None = UNSET,
        azure_deployment: str | Unset | None = UNSET,
        api_version: str | Unset | None = UNSET,
        unit_price_usd: Decimal | Unset | None = UNSET,
        image_prices: Mapping[str, Any] | Unset = UNSET,
        cache_write_5m_price_per_mtok: Decimal | Unset | None = UNSET,
        cache_write_1h_price_per_mtok: Decimal | Unset | None = UNSET,
        long_context_threshold_tokens: int | Unset | None = UNSET,
        long_context_input_price_per_mtok: Decimal | Unset | None = UNSET,
        long_context_cached_input_price_per_mtok: Decimal | Unset | None = UNSET,
        long_context_output_price_per_mtok: Decimal | Unset | None = UNSET,
    ) -> Model:
        changes: dict[str, Any] = _crud.set_fields(
            name=name,
            provider=provider,
            upstream_model=upstream_model,
            upstream_cluster=upstream_cluster,
            context_window=context_window,
            input_price_per_mtok=input_price_per_mtok,
            output_price_per_mtok=output_price_per_mtok,
            cached_input_price_per_mtok=cached_input_price_per_mtok,
            enabled=enabled,
            account=account,
            azure_deployment=azure_deployment,
            api_version=api_version,
            unit_price_usd=unit_price_usd,
            image_prices=image_prices
            if isinstance(image_prices, Unset)
            else _image_prices(image_prices),
            cache_write_5m_price_per_mtok=cache_write_5m_price_per_mtok,
            cache_write_1h_price_per_mtok=cache_write_1h_price_per_mtok,
            long_context_threshold_tokens=long_context_threshold_tokens,
            long_context_input_price_per_mtok=long_context_input_price_per_mtok,
            long_context_cached_input_price_per_mtok=long_context_cached_input_price_per_mtok,
            long_context_output_price_per_mtok=long_context_output_price_per_mtok,
        )
        async with write_transaction(self._pool) as conn:
            with translate_errors(_KIND):
                model = await _crud.update_versioned(
                    conn,
                    Model,
                    kind=_KIND,
                    table="models",
                    key={"id": model_id},
                    version=version,
                    changes=changes,
                )
        await self._changed(model.id, "updated", model.version)
        return model

    async def delete(self, model_id: str, *, version: int | None = None) -> None:
        async with write_transaction(self._pool) as conn:
            await _crud.delete_versioned(
                conn, kind=_KIND, table="models", key={"id": model_id}, version=version
            )
        await self._changed(model_id, "deleted", None)

    async def _changed(self, model_id: str, action: Any, version: int | None) -> None:
        await _crud.publish(
            self._publisher,
            PolicyChange(kind="model", action=action, id=model_id, version=version),
        )
