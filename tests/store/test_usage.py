from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from policy_sidecar.store.postgres import InvalidError, Pool, UsageRepository, open_pool
from policy_sidecar.usage.record import UsageRecord

from .helpers import make_records

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)


async def _count(pool: Pool, query: str = "SELECT count(*) FROM usage_metrics") -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return int(row[0])


async def test_insert_roundtrips_every_field(pool: Pool) -> None:
    rec = make_records(1, start=T0, span=timedelta(seconds=1))[0]
    rec = UsageRecord(**{**rec.to_json_dict(), "started_at": rec.started_at,
                         "shadow_violations": ("a", "b"), "post_violations": ("c",),
                         "cost_usd": 0.0123, "latency_ms": 12.5, "unit": "seconds",
                         "quantity": 12.25})  # fmt: skip
    assert await UsageRepository(pool).insert_batch([rec]) == 1
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM usage_metrics")
        row = await cur.fetchone()
        names = [d.name for d in cur.description or ()]
    assert row is not None
    stored = dict(zip(names, row, strict=True))
    for field, value in rec.to_json_dict().items():
        got = stored[field]
        if field == "started_at":
            got = got.isoformat()
        elif field in ("cost_usd", "quantity"):
            got = float(got)
        assert got == value, field


async def test_batch_is_idempotent_on_request_id(pool: Pool) -> None:
    repo = UsageRepository(pool)
    records = make_records(500, start=T0, span=timedelta(hours=3))
    assert await repo.insert_batch(records) == 500
    hourly = await _count(pool, "SELECT sum(requests) FROM usage_rollup_hourly")
    # A retry, a partial overlap and duplicates inside one batch insert nothing twice.
    assert await repo.insert_batch(records) == 0
    more = make_records(600, start=T0, span=timedelta(hours=3))
    assert await repo.insert_batch(more + more[-50:]) == 100
    assert await _count(pool) == 600
    assert await _count(pool, "SELECT sum(requests) FROM usage_rollup_hourly") == hourly + 100
    assert await _count(pool, "SELECT sum(requests) FROM usage_rollup_daily") == 600
    assert await repo.insert_batch([]) == 0


async def test_naive_time_is_rejected(pool: Pool) -> None:
    rec = UsageRecord(request_id="r", started_at=datetime(2026, 1, 1), decision="allow",
                      status_code=200)  # fmt: skip
    with pytest.raises(InvalidError, match="started_at"):
        await UsageRepository(pool).insert_batch([rec])


async def test_partitions_created_on_demand_and_ahead(pool: Pool) -> None:
    await UsageRepository(pool).insert_batch(make_records(1, start=T0, span=timedelta(0)))
    assert await UsageRepository(pool).partitions() == (
        "usage_metrics_p20260310",
        "usage_metrics_p20260311",
        "usage_metrics_p20260312",
    )


async def test_partitions_created_on_demand_per_utc_day(pool: Pool) -> None:
    repo = UsageRepository(pool, create_ahead_days=0)
    # 22:30 UTC + 3h crosses midnight; a non-UTC offset lands on the UTC day.
    records = make_records(50, start=T0, span=timedelta(hours=3))
    tokyo = datetime(2026, 3, 20, 8, 0, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Tokyo")
    )
    records.append(UsageRecord(request_id="t", started_at=tokyo, decision="allow",
                               status_code=200))  # fmt: skip
    await repo.insert_batch(records)
    assert await repo.partitions() == (
        "usage_metrics_p20260310",
        "usage_metrics_p20260311",
        "usage_metrics_p20260320",
    )
    assert await _count(pool, "SELECT count(*) FROM usage_metrics_p20260320") == 1


async def test_maintain_creates_ahead_and_drops_by_retention(pool: Pool) -> None:
    repo = UsageRepository(pool, create_ahead_days=0)
    now = datetime(2026, 3, 31, 12, tzinfo=UTC)
    old = make_records(100, start=now - timedelta(days=40), span=timedelta(days=5), prefix="o")
    recent = make_records(100, start=now - timedelta(days=2), span=timedelta(days=2), prefix="n")
    await repo.insert_batch(old + recent)
    result = await repo.maintain(now=now, ahead_days=3, retention_days=30)
    parts = await repo.partitions()
    assert parts == tuple(
        f"usage_metrics_p2026{d}" for d in ("0329", "0330", "0331", "0401", "0402", "0403")
    )
    assert set(result.partitions_dropped) == {
        f"usage_metrics_p202602{d:02d}" for d in range(19, 25)
    }
    assert result.partitions_created == 3  # Apr 1..3; Mar 30/31 held recent rows
    assert await _count(pool) == 100
    assert await _count(pool, "SELECT sum(requests) FROM usage_rollup_daily") == 200
    assert await _count(pool, "SELECT coalesce(sum(requests), 0) FROM usage_rollup_hourly") == 100
    again = await repo.maintain(now=now, ahead_days=3, retention_days=30)
    assert (again.partitions_created, again.partitions_dropped) == (0, ())
    # A late record for a dropped day recreates its partition instead of failing.
    late = make_records(1, start=now - timedelta(days=39), span=timedelta(hours=1), prefix="l")
    assert await repo.insert_batch(late) == 1


async def test_two_writers_create_the_same_partition(pool: Pool) -> None:
    import asyncio

    a, b = UsageRepository(pool), UsageRepository(pool)
    batches = [make_records(200, start=T0, span=timedelta(hours=4), prefix=p) for p in "ab"]
    got = await asyncio.gather(a.insert_batch(batches[0]), b.insert_batch(batches[1]))
    assert list(got) == [200, 200]


async def _stage_rows(pool: Pool) -> int | None:
    """Rows in this (only) pooled session's staging table; None when it has none."""
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT to_regclass('pg_temp.usage_stage')")).fetchone()
        if row is None or row[0] is None:
            return None
        count = await (await conn.execute("SELECT count(*) FROM usage_stage")).fetchone()
    assert count is not None
    return int(count[0])


@pytest.mark.parametrize("fail_first", [True, False])
async def test_the_staging_table_outlives_batches_and_failures_empty(
    dsn: str, fail_first: bool
) -> None:
    # One connection, so every batch meets the same session's staging table.
    single = await open_pool(dsn, min_size=1, max_size=1)
    try:
        repo = UsageRepository(single)
        good = make_records(30, start=T0, span=timedelta(hours=2), prefix="g")
        more = make_records(20, start=T0, span=timedelta(hours=2), prefix="m")
        # Postgres refuses a NUL in text: the batch fails after staging its first row.
        bad = [*make_records(5, start=T0, span=timedelta(hours=1), prefix="b")]
        bad.append(UsageRecord(request_id="nul\x00", started_at=T0, decision="allow",
                               status_code=200))  # fmt: skip
        if fail_first:  # the session's very first batch fails: no table is left behind
            with pytest.raises(psycopg.Error):
                await repo.insert_batch(bad)
            assert await _stage_rows(single) is None
        assert await repo.insert_batch(good) == 30
        assert await _stage_rows(single) == 0  # kept for the next batch, emptied at commit
        with pytest.raises(psycopg.Error):
            await repo.insert_batch(bad)
        assert await _stage_rows(single) == 0
        assert await repo.insert_batch(more + good[:5]) == 20
        # A session that lost it (DISCARD, a pooler switching server connections).
        async with single.connection() as conn:
            await conn.execute("DISCARD TEMP")
        last = make_records(10, start=T0, span=timedelta(hours=1), prefix="l")
        assert await repo.insert_batch(last) == 10
        assert await _stage_rows(single) == 0
        assert await _count(single) == 60
        assert await _count(single, "SELECT sum(requests) FROM usage_rollup_daily") == 60
    finally:
        await single.close()
