"""Rollups maintained batch by batch equal a GROUP BY over the raw rows (100k rows)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from policy_sidecar.store.postgres import Pool, UsageQueries, UsageRepository
from policy_sidecar.store.postgres.usage_queries import UsageFilter

from .helpers import make_records

pytestmark = pytest.mark.postgres

START = datetime(2026, 5, 1, tzinfo=UTC)
ROWS = 100_000
BATCH = 10_000

# Written independently of the writer's SQL on purpose.
REFERENCE = """
SELECT date_trunc('{unit}', started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
       coalesce(org_id, '') AS org_id, coalesce(app_id, '') AS app_id,
       coalesce(environment, '') AS environment,
       coalesce(served_model, requested_model, '') AS model,
       count(*) AS requests,
       sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS denied_requests,
       sum(CASE WHEN decision IN ('error', 'incomplete')
                  OR (decision = 'allow' AND status_code >= 400) THEN 1 ELSE 0 END)
           AS error_requests,
       sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens,
       sum(total_tokens) AS total_tokens, sum(cached_tokens) AS cached_tokens,
       sum(reasoning_tokens) AS reasoning_tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       coalesce(sum(latency_ms), 0) AS latency_ms_sum, count(latency_ms) AS latency_count,
       sum(request_bytes) AS request_bytes, sum(response_bytes) AS response_bytes
FROM usage_metrics GROUP BY 1, 2, 3, 4, 5
"""

COMPARE = """
WITH ref AS ({reference})
SELECT count(*) FILTER (WHERE r.bucket IS NULL OR x.bucket IS NULL) AS missing,
       count(*) FILTER (WHERE
           (r.requests, r.denied_requests, r.error_requests, r.prompt_tokens,
            r.completion_tokens, r.total_tokens, r.cached_tokens, r.reasoning_tokens,
            r.cost_usd, r.latency_count, r.request_bytes, r.response_bytes)
           IS DISTINCT FROM
           (x.requests, x.denied_requests, x.error_requests, x.prompt_tokens,
            x.completion_tokens, x.total_tokens, x.cached_tokens, x.reasoning_tokens,
            x.cost_usd, x.latency_count, x.request_bytes, x.response_bytes)
           OR abs(r.latency_ms_sum - x.latency_ms_sum) > 1e-6 * greatest(1, x.latency_ms_sum)
       ) AS different,
       count(*) AS total
FROM ref x FULL JOIN {table} r USING (bucket, org_id, app_id, environment, model)
"""


async def _one(pool: Pool, query: str) -> tuple[Any, ...]:
    async with pool.connection() as conn:
        row = await (await conn.execute(query.encode())).fetchone()
    assert row is not None
    return tuple(row)


async def test_rollups_equal_group_by_over_raw_rows(pool: Pool) -> None:
    repo = UsageRepository(pool)
    records = make_records(ROWS, start=START, span=timedelta(days=3, hours=5), seed=7)
    t = time.perf_counter()
    for i in range(0, ROWS, BATCH):
        assert await repo.insert_batch(records[i : i + BATCH]) == BATCH
    # Retries of a whole batch and of an overlapping slice change nothing.
    assert await repo.insert_batch(records[:BATCH]) == 0
    assert await repo.insert_batch(records[BATCH // 2 : BATCH + BATCH // 2]) == 0
    elapsed = time.perf_counter() - t
    assert (await _one(pool, "SELECT count(*) FROM usage_metrics"))[0] == ROWS

    for unit, table in (("hour", "usage_rollup_hourly"), ("day", "usage_rollup_daily")):
        missing, different, total = await _one(
            pool, COMPARE.format(reference=REFERENCE.format(unit=unit), table=table)
        )
        assert (missing, different) == (0, 0), (unit, total)
        assert total > (100 if unit == "hour" else 10)

    denials = await _one(
        pool,
        """
        SELECT count(*) FROM (
            (SELECT date_trunc('hour', started_at, 'UTC') AS bucket, coalesce(org_id, ''),
                    coalesce(app_id, ''), coalesce(environment, ''), denied_by, count(*)
             FROM usage_metrics WHERE decision = 'deny' AND denied_by IS NOT NULL
             GROUP BY 1, 2, 3, 4, 5)
            EXCEPT ALL
            (SELECT bucket, org_id, app_id, environment, policy_id, denials
             FROM usage_denials_hourly)
        ) d
        """,
    )
    assert denials == (0,)
    print(f"inserted {ROWS} rows with rollups in {elapsed:.2f}s")


async def test_queries_agree_with_raw_rows(pool: Pool) -> None:
    repo = UsageRepository(pool)
    records = make_records(20_000, start=START, span=timedelta(days=3), seed=3)
    await repo.insert_batch(records)
    queries = UsageQueries(pool)
    start, end = START + timedelta(hours=5), START + timedelta(days=2)
    where = UsageFilter(org_id="acme", environment="production")
    raw = [
        r for r in records
        if start <= r.started_at < end and r.org_id == "acme" and r.environment == "production"
    ]  # fmt: skip
    totals = await queries.totals(start=start, end=end, where=where)
    assert totals.requests == len(raw)
    assert totals.total_tokens == sum(r.total_tokens for r in raw)
    assert totals.denied_requests == sum(r.decision == "deny" for r in raw)
    expected_cost = sum(Decimal(str(r.cost_usd)) for r in raw if r.cost_usd is not None)
    assert abs(totals.cost_usd - expected_cost) < Decimal("1e-6")

    day_start, day_end = START, START + timedelta(days=3)
    daily = await queries.time_series(start=day_start, end=day_end, bucket="day")
    hourly = await queries.time_series(start=day_start, end=day_end, bucket="hour")
    assert [p.totals.requests for p in daily] == [
        sum(p.totals.requests for p in hourly if p.bucket.date() == d.bucket.date()) for d in daily
    ]
    assert sum(p.totals.requests for p in daily) == len(records)
    whole = await queries.totals(start=day_start, end=day_end)  # reads the daily rollup
    assert whole.requests == len(records)

    top = await queries.top(start=day_start, end=day_end, by="app", metric="tokens", limit=3)
    by_app: dict[str, int] = {}
    for r in records:
        by_app[r.app_id or ""] = by_app.get(r.app_id or "", 0) + r.total_tokens
    assert [(e.key, e.totals.total_tokens) for e in top] == sorted(
        by_app.items(), key=lambda kv: (-kv[1], kv[0])
    )[:3]

    denials = await queries.denials_by_policy(start=day_start, end=day_end)
    expected: dict[str, int] = {}
    for r in records:
        if r.decision == "deny" and r.denied_by:
            expected[r.denied_by] = expected.get(r.denied_by, 0) + 1
    assert {d.policy_id: d.denials for d in denials} == expected
