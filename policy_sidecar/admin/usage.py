"""UsageService: read-only queries over the rollups and the most recent requests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import grpc

from policy_sidecar.admin.convert import decimal_text, page_size, timestamp, to_datetime
from policy_sidecar.admin.errors import Violations
from policy_sidecar.admin.v1 import usage_pb2 as pb
from policy_sidecar.store.postgres.usage_coverage import CoverageRow, UsageCoverage
from policy_sidecar.store.postgres.usage_queries import (
    Bucket,
    TopDimension,
    TopMetric,
    UsageFilter,
    UsageQueries,
    UsageTotals,
)
from policy_sidecar.store.postgres.usage_recent import RecentRequest, RecentRequests

__all__ = ["UsageServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
_BUCKETS: dict[int, Bucket] = {pb.BUCKET_HOUR: "hour", pb.BUCKET_DAY: "day"}
_DIMENSIONS: dict[int, TopDimension] = {
    pb.TOP_DIMENSION_APP: "app",
    pb.TOP_DIMENSION_MODEL: "model",
}
_METRICS: dict[int, TopMetric] = {
    pb.TOP_METRIC_TOKENS: "tokens",
    pb.TOP_METRIC_COST: "cost",
    pb.TOP_METRIC_REQUESTS: "requests",
}


def _totals(t: UsageTotals) -> pb.UsageTotals:
    return pb.UsageTotals(
        requests=t.requests,
        denied_requests=t.denied_requests,
        error_requests=t.error_requests,
        prompt_tokens=t.prompt_tokens,
        completion_tokens=t.completion_tokens,
        total_tokens=t.total_tokens,
        cached_tokens=t.cached_tokens,
        reasoning_tokens=t.reasoning_tokens,
        cost_usd=decimal_text(t.cost_usd),
        request_bytes=t.request_bytes,
        response_bytes=t.response_bytes,
        avg_latency_ms=t.avg_latency_ms,
    )


def _filter(f: pb.UsageFilter) -> UsageFilter:
    return UsageFilter(f.org_id or None, f.app_id or None, f.environment or None, f.model or None)


def _range(request: Any, v: Violations) -> tuple[datetime, datetime]:
    v.require(request.HasField("start_time"), "start_time")
    v.require(request.HasField("end_time"), "end_time")
    v.check()
    return to_datetime(request.start_time), to_datetime(request.end_time)


def _record(r: RecentRequest) -> pb.RequestRecord:
    return pb.RequestRecord(
        request_id=r.request_id,
        start_time=timestamp(r.started_at),
        org_id=r.org_id or "",
        app_id=r.app_id or "",
        environment=r.environment or "",
        api_key_id=r.api_key_id or "",
        provider=r.provider or "",
        model=r.model or "",
        decision=r.decision,
        status_code=r.status_code,
        streamed=r.streamed,
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.completion_tokens,
        total_tokens=r.total_tokens,
        latency_ms=r.latency_ms,
        cost_usd=decimal_text(r.cost_usd),
        denied_by=r.denied_by or "",
        shadow_violations=r.shadow_violations,
        post_violations=r.post_violations,
        upstream_account=r.upstream_account or "",
    )


#: The longest range a coverage report reads (it scans raw rows, not rollups).
MAX_COVERAGE_RANGE = timedelta(days=31)


def _coverage_entry(row: CoverageRow) -> pb.CoverageEntry:
    return pb.CoverageEntry(
        provider=row.provider or "",
        operation=row.operation or "",
        unit=row.unit or "",
        requests=row.requests,
        allowed=row.allowed,
        denied=row.denied,
        quantity=decimal_text(row.quantity),
        cost_usd=decimal_text(row.cost_usd),
        unpriced_allowed=row.unpriced_allowed,
    )


class UsageServicer:
    def __init__(
        self, queries: UsageQueries, recent: RecentRequests, coverage: UsageCoverage
    ) -> None:
        self._queries = queries
        self._recent = recent
        self._coverage = coverage

    async def GetUsageSummary(
        self, request: pb.GetUsageSummaryRequest, context: Context
    ) -> pb.GetUsageSummaryResponse:
        start, end = _range(request, Violations())
        totals = await self._queries.totals(start=start, end=end, where=_filter(request.filter))
        return pb.GetUsageSummaryResponse(totals=_totals(totals))

    async def GetUsageTimeSeries(
        self, request: pb.GetUsageTimeSeriesRequest, context: Context
    ) -> pb.GetUsageTimeSeriesResponse:
        v = Violations()
        bucket = _BUCKETS.get(request.bucket)
        if bucket is None:
            v.add("bucket", "must be BUCKET_HOUR or BUCKET_DAY")
        start, end = _range(request, v)
        assert bucket is not None
        points = await self._queries.time_series(
            start=start, end=end, bucket=bucket, where=_filter(request.filter)
        )
        return pb.GetUsageTimeSeriesResponse(
            points=[
                pb.UsagePoint(bucket_time=timestamp(p.bucket), totals=_totals(p.totals))
                for p in points
            ]
        )

    async def ListTopUsage(
        self, request: pb.ListTopUsageRequest, context: Context
    ) -> pb.ListTopUsageResponse:
        v = Violations()
        by = _DIMENSIONS.get(request.by)
        metric = _METRICS.get(request.metric)
        if by is None:
            v.add("by", "must be TOP_DIMENSION_APP or TOP_DIMENSION_MODEL")
        if metric is None:
            v.add("metric", "must be TOP_METRIC_TOKENS, TOP_METRIC_COST or TOP_METRIC_REQUESTS")
        start, end = _range(request, v)
        assert by is not None and metric is not None
        entries = await self._queries.top(
            start=start,
            end=end,
            by=by,
            metric=metric,
            limit=request.limit or 10,
            where=_filter(request.filter),
        )
        return pb.ListTopUsageResponse(
            entries=[pb.TopUsageEntry(key=e.key, totals=_totals(e.totals)) for e in entries]
        )

    async def ListDenialsByPolicy(
        self, request: pb.ListDenialsByPolicyRequest, context: Context
    ) -> pb.ListDenialsByPolicyResponse:
        start, end = _range(request, Violations())
        denials = await self._queries.denials_by_policy(
            start=start, end=end, where=_filter(request.filter)
        )
        return pb.ListDenialsByPolicyResponse(
            denials=[pb.PolicyDenials(policy_id=d.policy_id, denials=d.denials) for d in denials]
        )

    async def ListRecentRequests(
        self, request: pb.ListRecentRequestsRequest, context: Context
    ) -> pb.ListRecentRequestsResponse:
        page = await self._recent.list(
            where=_filter(request.filter),
            page_size=page_size(request.page_size, default=50),
            page_token=request.page_token or None,
        )
        return pb.ListRecentRequestsResponse(
            requests=[_record(r) for r in page.items], next_page_token=page.next_page_token or ""
        )

    async def GetUsageCoverage(
        self, request: pb.GetUsageCoverageRequest, context: Context
    ) -> pb.GetUsageCoverageResponse:
        v = Violations()
        size = page_size(request.page_size)
        offset = 0
        if request.page_token:
            if not request.page_token.isdigit() or len(request.page_token) > 9:
                v.add("page_token", "not a token this method returned")
            else:
                offset = int(request.page_token)
        start, end = _range(request, v)
        if end <= start:
            v.add("end_time", "must be after start_time")
        elif end - start > MAX_COVERAGE_RANGE:
            v.add("end_time", f"the range must be at most {MAX_COVERAGE_RANGE.days} days")
        v.check()
        # One row per route and unit seen: a few dozen at most, paged in memory.
        rows = await self._coverage.by_route(start=start, end=end)
        page = rows[offset : offset + size]
        more = offset + size < len(rows)
        return pb.GetUsageCoverageResponse(
            entries=[_coverage_entry(r) for r in page],
            next_page_token=str(offset + size) if more else "",
        )
