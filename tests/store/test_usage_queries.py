from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from policy_sidecar.store.postgres import InvalidError, Pool, UsageQueries, UsageRepository
from policy_sidecar.store.postgres.usage_queries import UsageFilter, UsageTotals
from policy_sidecar.usage.record import UsageRecord

pytestmark = pytest.mark.postgres

DAY = datetime(2026, 4, 1, tzinfo=UTC)
H = timedelta(hours=1)
END = DAY + 48 * H


def rec(rid: str, at: datetime, **kw: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "decision": "allow",
        "status_code": 200,
        "org_id": "acme",
        "app_id": "app_a",
        "environment": "prod",
        "served_model": "m1",
    }
    return UsageRecord(request_id=rid, started_at=at, **{**base, **kw})


RECORDS = [
    rec("1", DAY + 10 * H, total_tokens=100, prompt_tokens=60, completion_tokens=40,
        cost_usd=0.5, latency_ms=100.0),
    rec("2", DAY + 10 * H + timedelta(minutes=5), total_tokens=300, cost_usd=0.25,
        latency_ms=300.0, app_id="app_b", served_model=None, requested_model="m2"),
    rec("3", DAY + 11 * H, decision="deny", status_code=429, denied_by="pol_rate",
        app_id="app_b"),
    rec("4", DAY + 30 * H, decision="allow", status_code=502, total_tokens=7, app_id=None),
    rec("5", DAY + 30 * H, decision="deny", status_code=403, denied_by="pol_allow"),
    rec("6", DAY + 31 * H, decision="deny", status_code=429, denied_by="pol_rate"),
]  # fmt: skip


@pytest.fixture
async def queries(pool: Pool) -> UsageQueries:
    await UsageRepository(pool).insert_batch(RECORDS)
    return UsageQueries(pool)


async def test_totals_exact(queries: UsageQueries) -> None:
    got = await queries.totals(start=DAY + 10 * H, end=DAY + 12 * H)
    assert got == UsageTotals(
        requests=3, denied_requests=1, error_requests=0, prompt_tokens=60,
        completion_tokens=40, total_tokens=400, cost_usd=Decimal("0.75"),
        avg_latency_ms=200.0,
    )  # fmt: skip
    empty = await queries.totals(start=DAY + 20 * H, end=DAY + 21 * H)
    assert empty == UsageTotals()
    two_days = await queries.totals(start=DAY, end=DAY + 48 * H)
    assert (two_days.requests, two_days.error_requests, two_days.denied_requests) == (6, 1, 3)


@pytest.mark.parametrize(
    ("where", "requests"),
    [
        (UsageFilter(app_id="app_b"), 2),
        (UsageFilter(app_id=""), 1),
        (UsageFilter(model="m2"), 1),
        (UsageFilter(org_id="acme", environment="prod", model="m1"), 5),
        (UsageFilter(org_id="other"), 0),
    ],
)
async def test_filters(queries: UsageQueries, where: UsageFilter, requests: int) -> None:
    got = await queries.totals(start=DAY, end=DAY + 48 * H, where=where)
    assert got.requests == requests


async def test_time_series(queries: UsageQueries) -> None:
    hourly = await queries.time_series(start=DAY, end=DAY + 48 * H, bucket="hour")
    assert [(p.bucket, p.totals.requests) for p in hourly] == [
        (DAY + 10 * H, 2), (DAY + 11 * H, 1), (DAY + 30 * H, 2), (DAY + 31 * H, 1)
    ]  # fmt: skip
    daily = await queries.time_series(start=DAY, end=DAY + 48 * H, bucket="day")
    assert [(p.bucket, p.totals.requests) for p in daily] == [(DAY, 3), (DAY + 24 * H, 3)]


async def test_top_and_denials(queries: UsageQueries) -> None:
    by_tokens = await queries.top(start=DAY, end=END, by="app", metric="tokens", limit=2)
    assert [(e.key, e.totals.total_tokens) for e in by_tokens] == [("app_b", 300), ("app_a", 100)]
    by_requests = await queries.top(start=DAY, end=END, by="app", metric="requests")
    assert [(e.key, e.totals.requests) for e in by_requests] == [
        ("app_a", 3), ("app_b", 2), ("", 1)
    ]  # fmt: skip
    by_cost = await queries.top(start=DAY, end=END, by="model", metric="cost", limit=1)
    assert [(e.key, e.totals.cost_usd) for e in by_cost] == [("m1", Decimal("0.5"))]
    denials = await queries.denials_by_policy(start=DAY, end=END)
    assert [(d.policy_id, d.denials) for d in denials] == [("pol_rate", 2), ("pol_allow", 1)]
    only_b = await queries.denials_by_policy(start=DAY, end=END, where=UsageFilter(app_id="app_b"))
    assert [(d.policy_id, d.denials) for d in only_b] == [("pol_rate", 1)]


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (datetime(2026, 4, 1), DAY + H, "start"),
        (DAY + timedelta(minutes=1), DAY + H, "start"),
        (DAY, DAY + timedelta(seconds=1), "end"),
        (DAY + H, DAY + H, "end"),
    ],
)
async def test_range_validation(
    queries: UsageQueries, start: datetime, end: datetime, field: str
) -> None:
    with pytest.raises(InvalidError, match=field):
        await queries.totals(start=start, end=end)


async def test_day_bucket_needs_midnight_and_limit_bounds(queries: UsageQueries) -> None:
    with pytest.raises(InvalidError, match="day"):
        await queries.time_series(start=DAY + H, end=DAY + 24 * H, bucket="day")
    with pytest.raises(InvalidError, match="limit"):
        await queries.top(start=DAY, end=DAY + H, by="app", metric="cost", limit=0)
