"""Usage writes: idempotent batch insert (COPY) with rollups, partition upkeep."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow

from policy_sidecar.store.postgres import _rollup_sql as q
from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.usage.record import UsageRecord

__all__ = ["MaintenanceResult", "UsageRepository"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MaintenanceResult:
    partitions_created: int
    partitions_dropped: tuple[str, ...]
    rollup_rows_deleted: int


def _row(r: UsageRecord) -> tuple[object, ...]:
    return (
        r.request_id, r.started_at, r.decision, r.status_code, r.org_id, r.app_id,
        r.environment, r.api_key_id, r.provider, r.operation, r.requested_model,
        r.served_model, r.streamed, r.prompt_tokens, r.completion_tokens, r.total_tokens,
        r.cached_tokens, r.reasoning_tokens, r.estimated_tokens, r.usage_reported,
        r.latency_ms, r.ttft_ms, r.request_bytes, r.response_bytes,
        # Binary COPY wants a Decimal for numeric; repr gives the shortest exact decimal.
        None if r.cost_usd is None else Decimal(repr(r.cost_usd)), r.denied_by,
        list(r.shadow_violations), list(r.post_violations), r.client_request_id,
        list(r.usage_flags), r.unit, Decimal(repr(float(r.quantity))), r.price_version,
        r.upstream_account,
    )  # fmt: skip


def _utc_day(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


def _day_start(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


class UsageRepository:
    """Writes usage rows. Safe to share between tasks; one instance per process.

    `insert_batch` is idempotent on (started_at, request_id): resending a batch
    inserts nothing twice and leaves the rollups unchanged.
    """

    def __init__(self, pool: Pool, *, create_ahead_days: int = 2) -> None:
        self._pool = pool
        # When a batch needs a new day, the next days are created with it, so the
        # partition for midnight exists before the first write at midnight.
        self._ahead = create_ahead_days
        # UTC days known to have a partition, so the common batch skips the check.
        self._days: set[date] = set()
        # Pooled connections whose session already has the staging table (`q.STAGE`).
        self._staged: weakref.WeakSet[AsyncConnection[TupleRow]] = weakref.WeakSet()

    async def insert_batch(self, records: Sequence[UsageRecord]) -> int:
        """Store `records` and update rollups in one transaction; return rows inserted."""
        if not records:
            return 0
        for r in records:
            if r.started_at.tzinfo is None:
                raise InvalidError("usage record", "started_at", f"{r.request_id}: naive time")
        days = {_utc_day(r.started_at) for r in records}
        await self._ensure_days(days)
        try:
            return await self._insert(records)
        except pg_errors.UndefinedTable:
            # The session lost its staging table (DISCARD, or a pooler such as PgBouncer
            # handing out server connections per transaction): stage in the batch's own
            # transaction. Still missing afterwards (no usage_metrics): it raises.
            return await self._insert(records, stage=True)
        except pg_errors.CheckViolation:
            # A partition dropped under our cache (retention); recreate and retry once.
            self._days.clear()
            await self._ensure_days(days)
            return await self._insert(records)

    async def _insert(self, records: Sequence[UsageRecord], *, stage: bool = False) -> int:
        async with self._pool.connection() as conn:
            staged = not stage and conn in self._staged
            async with conn.transaction():
                if not staged:
                    await conn.execute(q.STAGE)
                async with conn.cursor() as cur:
                    async with cur.copy(q.COPY) as copy:
                        copy.set_types(list(q.COPY_TYPES))
                        for r in records:
                            await copy.write_row(_row(r))
                    await cur.execute(q.INSERT_AND_ROLL_UP)
                    row = await cur.fetchone()
            # Only once committed: a rolled-back transaction took the table with it.
            self._staged.add(conn)
        assert row is not None
        return int(row[0])

    async def _ensure_days(self, days: set[date]) -> None:
        missing = sorted(days - self._days)
        if not missing:
            return
        # Its own short transaction: the function's advisory lock must not be held
        # for the duration of a batch insert.
        async with self._pool.connection() as conn, conn.transaction():
            for d in missing:
                last = d + timedelta(days=self._ahead)
                await conn.execute(
                    "SELECT usage_ensure_partitions(%s, %s)", (_day_start(d), _day_start(last))
                )
                self._days.update(d + timedelta(days=i) for i in range(self._ahead + 1))

    async def maintain(
        self,
        *,
        now: datetime,
        ahead_days: int = 7,
        retention_days: int = 90,
        hourly_rollup_retention_days: int | None = None,
    ) -> MaintenanceResult:
        """Create partitions for yesterday .. now + ahead_days, drop raw partitions
        that ended more than `retention_days` ago (DROP, not DELETE), and delete
        hourly rollups past their retention (default: same as raw). Daily rollups
        are kept. Run it periodically (e.g. hourly) from any replica."""
        if now.tzinfo is None:
            raise InvalidError("maintenance", "now", "must be timezone-aware")
        today = _utc_day(now)
        cutoff = _day_start(today - timedelta(days=retention_days))
        hourly_days = hourly_rollup_retention_days or retention_days
        hourly_cutoff = _day_start(today - timedelta(days=hourly_days))
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT usage_ensure_partitions(%s, %s)",
                (_day_start(today - timedelta(days=1)), _day_start(today + timedelta(ahead_days))),
            )
            created = (await cur.fetchone() or (0,))[0]
            cur = await conn.execute("SELECT * FROM usage_drop_partitions(%s)", (cutoff,))
            dropped = tuple(str(r[0]) for r in await cur.fetchall())
            deleted = 0
            for table in ("usage_rollup_hourly", "usage_denials_hourly"):
                cur = await conn.execute(
                    f"DELETE FROM {table} WHERE bucket < %s",
                    (hourly_cutoff,),
                )
                deleted += cur.rowcount
        self._days.clear()
        if dropped:
            log.info("usage retention dropped partitions %s", ", ".join(dropped))
        return MaintenanceResult(int(created), dropped, deleted)

    async def partitions(self) -> tuple[str, ...]:
        """Names of the existing usage partitions, oldest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'usage_metrics'::regclass ORDER BY c.relname"
            )
            return tuple(str(r[0]) for r in await cur.fetchall())
