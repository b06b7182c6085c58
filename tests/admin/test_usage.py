from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from policy_sidecar.admin import AdminServer
from policy_sidecar.admin.metrics import REQUESTS_TOTAL
from policy_sidecar.admin.v1 import usage_pb2 as pb
from policy_sidecar.store.postgres import Pool, UsageRepository
from policy_sidecar.usage.record import UsageRecord

from .conftest import Client
from .helpers import READ, fails, field_violations

pytestmark = pytest.mark.postgres

DAY = datetime(2026, 4, 1, tzinfo=UTC)
H = timedelta(hours=1)


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


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
    rec(
        "r1",
        DAY + 10 * H,
        prompt_tokens=60,
        completion_tokens=40,
        total_tokens=100,
        cost_usd=0.5,
        shadow_violations=("pol_shadow_rl",),
    ),
    rec("r2", DAY + 10 * H + timedelta(minutes=5), total_tokens=300, app_id="app_b", cost_usd=0.25),
    rec("r3", DAY + 11 * H, decision="deny", status_code=403, denied_by="pol_allow"),
    rec(
        "r4",
        DAY + 30 * H,
        total_tokens=7,
        served_model="m2",
        latency_ms=50.0,
        post_violations=("pol_cel_post", "pol_cel_post2"),
    ),
]


@pytest.fixture
async def usage(pool: Pool) -> None:
    await UsageRepository(pool).insert_batch(RECORDS)


RANGE = {"start_time": ts(DAY), "end_time": ts(DAY + 48 * H)}


@pytest.mark.usefixtures("usage")
@pytest.mark.parametrize(
    ("filter_", "requests", "tokens", "cost"),
    [
        (pb.UsageFilter(), 4, 407, "0.75"),
        (pb.UsageFilter(app_id="app_b"), 1, 300, "0.25"),
        (pb.UsageFilter(model="m2"), 1, 7, "0"),
        (pb.UsageFilter(org_id="globex"), 0, 0, "0"),
    ],
)
async def test_summary(
    client: Client, filter_: pb.UsageFilter, requests: int, tokens: int, cost: str
) -> None:
    response = await client.usage.GetUsageSummary(
        pb.GetUsageSummaryRequest(filter=filter_, **RANGE), metadata=READ
    )
    t = response.totals
    assert (t.requests, t.total_tokens, t.cost_usd) == (requests, tokens, cost)


@pytest.mark.usefixtures("usage")
async def test_series_top_denials_recent(client: Client, admin: AdminServer) -> None:
    hourly = await client.usage.GetUsageTimeSeries(
        pb.GetUsageTimeSeriesRequest(bucket=pb.BUCKET_HOUR, **RANGE), metadata=READ
    )
    assert [(p.bucket_time.ToDatetime(UTC), p.totals.requests) for p in hourly.points] == [
        (DAY + 10 * H, 2),
        (DAY + 11 * H, 1),
        (DAY + 30 * H, 1),
    ]
    daily = await client.usage.GetUsageTimeSeries(
        pb.GetUsageTimeSeriesRequest(bucket=pb.BUCKET_DAY, **RANGE), metadata=READ
    )
    assert [p.totals.requests for p in daily.points] == [3, 1]
    top = await client.usage.ListTopUsage(
        pb.ListTopUsageRequest(
            by=pb.TOP_DIMENSION_APP, metric=pb.TOP_METRIC_TOKENS, limit=1, **RANGE
        ),
        metadata=READ,
    )
    assert [(e.key, e.totals.total_tokens) for e in top.entries] == [("app_b", 300)]
    denials = await client.usage.ListDenialsByPolicy(
        pb.ListDenialsByPolicyRequest(**RANGE), metadata=READ
    )
    assert [(d.policy_id, d.denials) for d in denials.denials] == [("pol_allow", 1)]

    seen: list[str] = []
    token = ""
    while True:
        page = await client.usage.ListRecentRequests(
            pb.ListRecentRequestsRequest(page_size=3, page_token=token), metadata=READ
        )
        seen += [r.request_id for r in page.requests]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["r4", "r3", "r2", "r1"]  # newest first
    only = await client.usage.ListRecentRequests(
        pb.ListRecentRequestsRequest(filter=pb.UsageFilter(app_id="app_b")), metadata=READ
    )
    assert [(r.request_id, r.cost_usd) for r in only.requests] == [("r2", "0.25")]
    recent = {r.request_id: r for r in page.requests}
    assert recent["r1"].prompt_tokens == 60
    # Shadow and post-check violations are visible, not only hard denials.
    first = await client.usage.ListRecentRequests(pb.ListRecentRequestsRequest(), metadata=READ)
    by_id = {r.request_id: r for r in first.requests}
    assert list(by_id["r1"].shadow_violations) == ["pol_shadow_rl"]
    assert list(by_id["r4"].post_violations) == ["pol_cel_post", "pol_cel_post2"]
    assert list(by_id["r2"].shadow_violations) == list(by_id["r2"].post_violations) == []
    # Metrics: every call counted by method and code.
    value = admin.metrics.registry.get_sample_value(
        REQUESTS_TOTAL + "_total",
        {"method": "policy_sidecar.admin.v1.UsageService.ListRecentRequests", "code": "OK"},
    )
    assert value == 4


@pytest.mark.parametrize(
    ("request_", "violations"),
    [
        (pb.GetUsageTimeSeriesRequest(), {"bucket", "start_time", "end_time"}),
        (
            pb.GetUsageTimeSeriesRequest(
                bucket=pb.BUCKET_DAY, start_time=ts(DAY + H), end_time=ts(DAY + 24 * H)
            ),
            {"start"},
        ),
        (
            pb.GetUsageTimeSeriesRequest(
                bucket=pb.BUCKET_HOUR, start_time=ts(DAY + H), end_time=ts(DAY)
            ),
            {"end"},
        ),
    ],
)
async def test_series_violations(
    client: Client, request_: pb.GetUsageTimeSeriesRequest, violations: set[str]
) -> None:
    exc = await fails(client.usage.GetUsageTimeSeries(request_, metadata=READ))
    assert set(field_violations(exc)) == violations


async def test_top_violations_and_bad_token(client: Client) -> None:
    exc = await fails(client.usage.ListTopUsage(pb.ListTopUsageRequest(**RANGE), metadata=READ))
    assert set(field_violations(exc)) == {"by", "metric"}
    exc = await fails(
        client.usage.ListRecentRequests(
            pb.ListRecentRequestsRequest(page_token="!!not-a-token"), metadata=READ
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
