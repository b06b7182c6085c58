"""Screen 4: the usage dashboard, read from the admin API's UsageService only."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from google.protobuf import timestamp_pb2

from policy_sidecar.admin.v1 import applications_pb2, policies_pb2, usage_pb2
from policy_sidecar.console.admin_client import AdminClient
from policy_sidecar.console.render import render
from policy_sidecar.console.state import CLIENT_KEY, current_user

__all__ = ["RANGES", "UsageQuery", "add_routes"]

# name -> (length, bucket); ranges end at the next UTC hour (day for daily buckets).
RANGES: dict[str, tuple[timedelta, str]] = {
    "6h": (timedelta(hours=6), "hour"),
    "24h": (timedelta(hours=24), "hour"),
    "7d": (timedelta(days=7), "hour"),
    "30d": (timedelta(days=30), "day"),
    "90d": (timedelta(days=90), "day"),
}
BUCKETS = {"hour": usage_pb2.BUCKET_HOUR, "day": usage_pb2.BUCKET_DAY}
METRICS = {
    "tokens": usage_pb2.TOP_METRIC_TOKENS,
    "cost": usage_pb2.TOP_METRIC_COST,
    "requests": usage_pb2.TOP_METRIC_REQUESTS,
}
RECENT = 50
SHADOW_SCAN = 500


def _ts(moment: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment)
    return out


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """The dashboard's query string, validated, with the aligned range it names."""

    range: str
    bucket: str
    metric: str
    app_id: str
    environment: str
    model: str
    refresh: bool
    start: datetime
    end: datetime

    @classmethod
    def parse(cls, query: dict[str, str], now: datetime) -> UsageQuery:
        name = query.get("range", "24h")
        length, default_bucket = RANGES.get(name, RANGES["24h"])
        name = name if name in RANGES else "24h"
        bucket = query.get("bucket", default_bucket)
        bucket = bucket if bucket in BUCKETS else default_bucket
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        if bucket == "day":
            end = end.replace(hour=0) + timedelta(days=1)
        metric = query.get("metric", "tokens")
        return cls(
            range=name,
            bucket=bucket,
            metric=metric if metric in METRICS else "tokens",
            app_id=query.get("app_id", "").strip(),
            environment=query.get("environment", "").strip(),
            model=query.get("model", "").strip(),
            refresh=query.get("refresh", "") == "on",
            start=end - length,
            end=end,
        )

    @property
    def filter(self) -> usage_pb2.UsageFilter:
        return usage_pb2.UsageFilter(
            app_id=self.app_id, environment=self.environment, model=self.model
        )


async def _dashboard_data(client: AdminClient, token: str, q: UsageQuery) -> dict[str, Any]:
    start, end = _ts(q.start), _ts(q.end)
    summary = await client.call(
        client.usage.GetUsageSummary,
        usage_pb2.GetUsageSummaryRequest(start_time=start, end_time=end, filter=q.filter),
        token,
    )
    series = await client.call(
        client.usage.GetUsageTimeSeries,
        usage_pb2.GetUsageTimeSeriesRequest(
            start_time=start, end_time=end, bucket=BUCKETS[q.bucket], filter=q.filter
        ),
        token,
    )
    tops = {}
    for by, dimension in (
        ("app", usage_pb2.TOP_DIMENSION_APP),
        ("model", usage_pb2.TOP_DIMENSION_MODEL),
    ):
        tops[by] = (
            await client.call(
                client.usage.ListTopUsage,
                usage_pb2.ListTopUsageRequest(
                    start_time=start,
                    end_time=end,
                    by=dimension,
                    metric=METRICS[q.metric],
                    limit=10,
                    filter=q.filter,
                ),
                token,
            )
        ).entries
    denials = await client.call(
        client.usage.ListDenialsByPolicy,
        usage_pb2.ListDenialsByPolicyRequest(start_time=start, end_time=end, filter=q.filter),
        token,
    )
    recent = await client.call(
        client.usage.ListRecentRequests,
        usage_pb2.ListRecentRequestsRequest(filter=q.filter, page_size=SHADOW_SCAN),
        token,
    )
    in_range = [
        r for r in recent.requests if q.start <= r.start_time.ToDatetime(tzinfo=UTC) < q.end
    ]
    shadow = Counter(p for r in in_range for p in r.shadow_violations)
    policies = await client.call(
        client.policies.ListPolicies, policies_pb2.ListPoliciesRequest(page_size=500), token
    )
    by_id = {p.id: p for p in policies.policies}
    rows = {d.policy_id: [d.denials, 0] for d in denials.denials}
    for policy_id, hits in shadow.items():
        rows.setdefault(policy_id, [0, 0])[1] = hits
    apps: applications_pb2.ListApplicationsResponse = await client.call(
        client.apps.ListApplications,
        applications_pb2.ListApplicationsRequest(include_archived=True, page_size=500),
        token,
    )
    chart = {
        "start": int(q.start.timestamp()),
        "end": int(q.end.timestamp()),
        "t": [p.bucket_time.seconds for p in series.points],
        "requests": [p.totals.requests for p in series.points],
        "denied": [p.totals.denied_requests for p in series.points],
        "prompt_tokens": [p.totals.prompt_tokens for p in series.points],
        "completion_tokens": [p.totals.completion_tokens for p in series.points],
        "cost_usd": [float(p.totals.cost_usd or 0) for p in series.points],
    }
    return {
        "totals": summary.totals,
        "points": series.points,
        "chart_json": json.dumps(chart).replace("<", "\\u003c"),
        "top_apps": tops["app"],
        "top_models": tops["model"],
        "denial_rows": sorted(rows.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0])),
        "policies": by_id,
        "app_names": {a.id: a.name for a in apps.applications},
        "recent": recent.requests[:RECENT],
        "shadow_scanned": len(in_range),
    }


async def dashboard(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    q = UsageQuery.parse(dict(request.query), datetime.now(UTC))
    data = await _dashboard_data(client, user.token, q)
    return render(
        request,
        "usage.html",
        q=q,
        ranges=list(RANGES),
        metrics=list(METRICS),
        query_string=request.query_string,
        **data,
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/usage", dashboard)
