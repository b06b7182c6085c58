"""The metering coverage report: traffic by route and unit over a time range.

An operator reads it to see that nothing bypasses metering: every route's requests,
decisions and billed quantity, the rows with no metered route (``unit`` null: free
routes, unknown paths passed through, requests refused before routing), the rows
recorded without a cost (unpriced models allowed by ``unpriced: allow_and_report``),
and the refusals for lack of a price (``model_unpriced``) or for an endpoint that is
not metered (``endpoint_not_metered``). Read from the raw rows (a range scan over the
daily partitions); meant for hours to days, not for the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg.rows import class_row

from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.store.postgres.pool import Pool

__all__ = ["CoverageRow", "UsageCoverage"]


@dataclass(frozen=True, slots=True)
class CoverageRow:
    provider: str | None
    operation: str | None
    unit: str | None
    requests: int
    allowed: int
    denied: int
    quantity: Decimal
    cost_usd: Decimal
    # Allowed, with a usage report, and no cost: priced by no price book version.
    unpriced_allowed: int


_QUERY = """
SELECT provider, operation, unit,
       count(*) AS requests,
       count(*) FILTER (WHERE decision = 'allow') AS allowed,
       count(*) FILTER (WHERE decision = 'deny') AS denied,
       coalesce(sum(quantity), 0) AS quantity,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       count(*) FILTER (WHERE decision = 'allow' AND usage_reported AND cost_usd IS NULL)
           AS unpriced_allowed
FROM usage_metrics
WHERE started_at >= %s AND started_at < %s
GROUP BY provider, operation, unit
ORDER BY provider NULLS LAST, operation NULLS LAST, unit NULLS LAST
"""


class UsageCoverage:
    """Safe to share."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def by_route(self, *, start: datetime, end: datetime) -> list[CoverageRow]:
        """One row per (provider, operation, unit) seen in ``[start, end)``; rows with no
        metered route have all three null."""
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise InvalidError("usage coverage", "start/end", "an aware range, start < end")
        async with (
            self._pool.connection() as conn,
            conn.cursor(row_factory=class_row(CoverageRow)) as cur,
        ):
            await cur.execute(_QUERY, (start, end))
            return await cur.fetchall()
