"""Dashboard queries over the usage rollups; they never scan raw usage rows.

Ranges are half-open [start, end), timezone-aware, aligned to the hour. When both
ends fall on UTC midnight the daily rollup is read, otherwise the hourly one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal

from psycopg.rows import dict_row

from policy_sidecar.store.postgres._rollup_sql import MEASURES
from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.store.postgres.pool import Pool

__all__ = [
    "Bucket",
    "PolicyDenials",
    "TopDimension",
    "TopEntry",
    "TopMetric",
    "UsageFilter",
    "UsagePoint",
    "UsageQueries",
    "UsageTotals",
]

Bucket = Literal["hour", "day"]
TopDimension = Literal["app", "model"]
TopMetric = Literal["tokens", "cost", "requests"]

_TOP_COLUMN: Final = {"app": "app_id", "model": "model"}
_TOP_ORDER: Final = {"tokens": "total_tokens", "cost": "cost_usd", "requests": "requests"}
_MAX_TOP: Final = 1000


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Equality filters; None means any. '' matches rows where the value was unknown."""

    org_id: str | None = None
    app_id: str | None = None
    environment: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int = 0
    denied_requests: int = 0
    error_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    request_bytes: int = 0
    response_bytes: int = 0
    # Mean over requests that reported a latency; None when none did.
    avg_latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class UsagePoint:
    bucket: datetime
    totals: UsageTotals


@dataclass(frozen=True, slots=True)
class TopEntry:
    key: str
    totals: UsageTotals


@dataclass(frozen=True, slots=True)
class PolicyDenials:
    policy_id: str
    denials: int


_SUMS: Final = ", ".join(f"coalesce(sum({m}), 0) AS {m}" for m in MEASURES)


def _totals(row: dict[str, Any]) -> UsageTotals:
    count = int(row["latency_count"])
    return UsageTotals(
        requests=int(row["requests"]),
        denied_requests=int(row["denied_requests"]),
        error_requests=int(row["error_requests"]),
        prompt_tokens=int(row["prompt_tokens"]),
        completion_tokens=int(row["completion_tokens"]),
        total_tokens=int(row["total_tokens"]),
        cached_tokens=int(row["cached_tokens"]),
        reasoning_tokens=int(row["reasoning_tokens"]),
        cost_usd=Decimal(row["cost_usd"]),
        request_bytes=int(row["request_bytes"]),
        response_bytes=int(row["response_bytes"]),
        avg_latency_ms=float(row["latency_ms_sum"]) / count if count else None,
    )


def _aligned(ts: datetime, unit: Bucket) -> bool:
    u = ts.astimezone(UTC)
    ok = u.minute == 0 and u.second == 0 and u.microsecond == 0
    return ok and (unit == "hour" or u.hour == 0)


def _check_range(start: datetime, end: datetime, unit: Bucket) -> None:
    for name, ts in (("start", start), ("end", end)):
        if ts.tzinfo is None:
            raise InvalidError("usage query", name, "must be timezone-aware")
        if not _aligned(ts, unit):
            raise InvalidError("usage query", name, f"must be aligned to the {unit} (UTC)")
    if end <= start:
        raise InvalidError("usage query", "end", "must be after start")


def _where(start: datetime, end: datetime, f: UsageFilter) -> tuple[str, list[Any]]:
    clauses = ["bucket >= %s", "bucket < %s"]
    params: list[Any] = [start, end]
    for column in ("org_id", "app_id", "environment", "model"):
        value = getattr(f, column)
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    return " AND ".join(clauses), params


class UsageQueries:
    """Read-only dashboard queries (admin service)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @staticmethod
    def _table(start: datetime, end: datetime) -> str:
        daily = _aligned(start, "day") and _aligned(end, "day")
        return "usage_rollup_daily" if daily else "usage_rollup_hourly"

    async def _rows(self, query: str, params: list[Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query.encode(), params)
            return await cur.fetchall()

    async def totals(
        self, *, start: datetime, end: datetime, where: UsageFilter | None = None
    ) -> UsageTotals:
        _check_range(start, end, "hour")
        cond, params = _where(start, end, where or UsageFilter())
        rows = await self._rows(
            f"SELECT {_SUMS} FROM {self._table(start, end)} WHERE {cond}", params
        )
        return _totals(rows[0])

    async def time_series(
        self,
        *,
        start: datetime,
        end: datetime,
        bucket: Bucket,
        where: UsageFilter | None = None,
    ) -> tuple[UsagePoint, ...]:
        """One point per bucket that has usage (empty buckets are omitted)."""
        _check_range(start, end, bucket)
        table = "usage_rollup_daily" if bucket == "day" else "usage_rollup_hourly"
        cond, params = _where(start, end, where or UsageFilter())
        rows = await self._rows(
            f"SELECT bucket, {_SUMS} FROM {table} WHERE {cond} GROUP BY bucket ORDER BY bucket",
            params,
        )
        return tuple(UsagePoint(r["bucket"], _totals(r)) for r in rows)

    async def top(
        self,
        *,
        start: datetime,
        end: datetime,
        by: TopDimension,
        metric: TopMetric,
        limit: int = 10,
        where: UsageFilter | None = None,
    ) -> tuple[TopEntry, ...]:
        """Top `limit` applications or models by tokens, cost or requests; ties by key."""
        _check_range(start, end, "hour")
        if not 1 <= limit <= _MAX_TOP:
            raise InvalidError("usage query", "limit", f"must be between 1 and {_MAX_TOP}")
        column = _TOP_COLUMN[by]
        cond, params = _where(start, end, where or UsageFilter())
        rows = await self._rows(
            f"SELECT {column} AS key, {_SUMS} FROM {self._table(start, end)} WHERE {cond}"
            f" GROUP BY {column} ORDER BY {_TOP_ORDER[metric]} DESC, {column} LIMIT %s",
            [*params, limit],
        )
        return tuple(TopEntry(str(r["key"]), _totals(r)) for r in rows)

    async def denials_by_policy(
        self, *, start: datetime, end: datetime, where: UsageFilter | None = None
    ) -> tuple[PolicyDenials, ...]:
        """Denials per denying policy, most first. The model filter does not apply."""
        _check_range(start, end, "hour")
        f = where or UsageFilter()
        cond, params = _where(start, end, UsageFilter(f.org_id, f.app_id, f.environment))
        rows = await self._rows(
            f"SELECT policy_id, sum(denials) AS denials FROM usage_denials_hourly WHERE {cond}"
            " GROUP BY policy_id ORDER BY denials DESC, policy_id",
            params,
        )
        return tuple(PolicyDenials(str(r["policy_id"]), int(r["denials"])) for r in rows)
