"""The versioned price book in Postgres (migration 0006_price_book.sql).

Versions are written by a trigger on ``models`` (every creation and every price change,
whatever the path); this module imports a book and lists the versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import class_row

from policy_sidecar.store.postgres import _crud
from policy_sidecar.store.postgres.deployments import ModelRepository
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.price_book_file import PriceEntry
from policy_sidecar.store.records import EXTRA_PRICE_FIELDS, Model

__all__ = ["PriceBookRepository", "PriceVersion"]


@dataclass(frozen=True, slots=True)
class PriceVersion:
    version: int
    model_id: str
    model_name: str
    effective_at: datetime
    input_price_per_mtok: Decimal | None
    output_price_per_mtok: Decimal | None
    cached_input_price_per_mtok: Decimal | None
    # Migration 0009_unit_prices.sql.
    unit_price_usd: Decimal | None = None
    image_prices: Mapping[str, Any] = field(default_factory=dict)
    cache_write_5m_price_per_mtok: Decimal | None = None
    cache_write_1h_price_per_mtok: Decimal | None = None
    long_context_threshold_tokens: int | None = None
    long_context_input_price_per_mtok: Decimal | None = None
    long_context_cached_input_price_per_mtok: Decimal | None = None
    long_context_output_price_per_mtok: Decimal | None = None


class PriceBookRepository:
    """Safe to share. ``import_book`` changes only the prices that differ, each through
    ``ModelRepository.update`` (optimistic versioning, change published)."""

    def __init__(self, pool: Pool, models: ModelRepository) -> None:
        self._pool = pool
        self._models = models

    async def versions(self, model_name: str | None = None) -> list[PriceVersion]:
        """Every version, oldest first; of one model (by its name then) if given."""
        query = "SELECT * FROM price_versions"
        params: tuple[str, ...] = ()
        if model_name is not None:
            query += " WHERE model_name = %s"
            params = (model_name,)
        async with (
            self._pool.connection() as conn,
            conn.cursor(row_factory=class_row(PriceVersion)) as cur,
        ):
            await cur.execute(query + " ORDER BY version", params)
            return await cur.fetchall()

    async def page(
        self, *, model_name: str | None = None, page_size: int = 100, after: int = 0
    ) -> tuple[list[PriceVersion], int | None]:
        """Versions after ``after`` (a version number, the page token), oldest first, and
        the token of the next page (None on the last)."""
        _crud.check_page_size("price version", page_size)
        query = "SELECT * FROM price_versions WHERE version > %s"
        params: list[Any] = [after]
        if model_name is not None:
            query += " AND model_name = %s"
            params.append(model_name)
        params.append(page_size + 1)
        async with (
            self._pool.connection() as conn,
            conn.cursor(row_factory=class_row(PriceVersion)) as cur,
        ):
            await cur.execute(query + " ORDER BY version LIMIT %s", params)
            rows = await cur.fetchall()
        if len(rows) > page_size:
            return rows[:page_size], rows[page_size - 1].version
        return rows, None

    async def import_book(self, entries: Sequence[PriceEntry]) -> list[str]:
        """Apply ``entries``; return the names of the models whose prices changed.
        A model that is not deployed raises `NotFoundError` before anything changes."""
        current = {}
        for entry in entries:
            current[entry.model] = await self._models.get_by_name(entry.model)
        changed: list[str] = []
        for entry in entries:
            model = current[entry.model]
            new = _prices(entry)
            if new == _prices(model):
                continue
            await self._models.update(model.id, version=model.version, **new)
            changed.append(entry.model)
        return changed


_TOKEN_PRICES = ("input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok")


def _prices(e: PriceEntry | Model) -> dict[str, Any]:
    """Every price of an entry or a model, comparable (image prices as decimals)."""
    out: dict[str, Any] = {name: getattr(e, name) for name in (*_TOKEN_PRICES, *EXTRA_PRICE_FIELDS)}
    out["image_prices"] = {k: Decimal(str(v)) for k, v in e.image_prices.items()}
    return out
