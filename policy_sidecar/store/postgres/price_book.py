"""The versioned price book in Postgres (migration 0006_price_book.sql).

Versions are written by a trigger on ``models`` (every creation and every price change,
whatever the path); this module imports a book and lists the versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg.rows import class_row

from policy_sidecar.store.postgres.deployments import ModelRepository
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.price_book_file import PriceEntry

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
            if new == (
                model.input_price_per_mtok,
                model.output_price_per_mtok,
                model.cached_input_price_per_mtok,
            ):
                continue
            await self._models.update(
                model.id,
                version=model.version,
                input_price_per_mtok=new[0],
                output_price_per_mtok=new[1],
                cached_input_price_per_mtok=new[2],
            )
            changed.append(entry.model)
        return changed


def _prices(e: PriceEntry) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    return (e.input_price_per_mtok, e.output_price_per_mtok, e.cached_input_price_per_mtok)
