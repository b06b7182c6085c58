"""The usage dashboard's metering coverage tab: `UsageService.GetUsageCoverage` over the
dashboard's range (at most 31 days: longer ranges keep their last 31 days)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiohttp import web
from google.protobuf import timestamp_pb2

from policy_sidecar.admin.v1 import usage_pb2
from policy_sidecar.console.admin_client import AdminClient
from policy_sidecar.console.render import render
from policy_sidecar.console.state import CLIENT_KEY, current_user
from policy_sidecar.console.usage_views import RANGES, UsageQuery

__all__ = ["MAX_RANGE", "CoverageTotals", "add_routes", "coverage_entries"]

#: The admin API's limit for one coverage report (it reads the raw rows).
MAX_RANGE = timedelta(days=31)
PAGE_SIZE = 500
MAX_PAGES = 20


def _ts(moment: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment)
    return out


@dataclass(frozen=True, slots=True)
class CoverageTotals:
    requests: int
    allowed: int
    denied: int
    # Decimal string, USD (the API's, summed).
    cost_usd: str
    unpriced_allowed: int

    @classmethod
    def of(cls, entries: list[usage_pb2.CoverageEntry]) -> CoverageTotals:
        return cls(
            requests=sum(e.requests for e in entries),
            allowed=sum(e.allowed for e in entries),
            denied=sum(e.denied for e in entries),
            cost_usd=f"{sum((Decimal(e.cost_usd or 0) for e in entries), Decimal(0)):f}",
            unpriced_allowed=sum(e.unpriced_allowed for e in entries),
        )


async def coverage_entries(
    client: AdminClient, token: str, start: datetime, end: datetime
) -> list[usage_pb2.CoverageEntry]:
    """Every page of the report for ``[start, end)`` (a few dozen rows in practice)."""
    entries: list[usage_pb2.CoverageEntry] = []
    page_token = ""
    for _ in range(MAX_PAGES):
        reply: usage_pb2.GetUsageCoverageResponse = await client.call(
            client.usage.GetUsageCoverage,
            usage_pb2.GetUsageCoverageRequest(
                start_time=_ts(start),
                end_time=_ts(end),
                page_size=PAGE_SIZE,
                page_token=page_token,
            ),
            token,
        )
        entries.extend(reply.entries)
        page_token = reply.next_page_token
        if not page_token:
            break
    return entries


async def coverage(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    q = UsageQuery.parse(dict(request.query), datetime.now(UTC))
    start = max(q.start, q.end - MAX_RANGE)
    entries = await coverage_entries(request.app[CLIENT_KEY], user.token, start, q.end)
    return render(
        request,
        "coverage.html",
        q=q,
        start=start,
        clamped=start > q.start,
        max_days=MAX_RANGE.days,
        ranges=list(RANGES),
        entries=entries,
        totals=CoverageTotals.of(entries),
        filtered=bool(q.app_id or q.environment or q.model),
        query_string=request.query_string,
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/usage/coverage", coverage)
