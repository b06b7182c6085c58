"""The most recent raw usage rows, newest first (admin "recent requests").

Keyset-paginated on the primary key (started_at, request_id) in descending order,
so each page is an index range scan merged across the daily partitions.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import class_row

from policy_sidecar.store.postgres._crud import check_page_size
from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.postgres.usage_queries import UsageFilter
from policy_sidecar.store.records import Page

__all__ = ["RecentRequest", "RecentRequests"]

_KIND = "usage query"


@dataclass(frozen=True, slots=True)
class RecentRequest:
    request_id: str
    started_at: datetime
    org_id: str | None
    app_id: str | None
    environment: str | None
    api_key_id: str | None
    provider: str | None
    model: str | None
    decision: str
    status_code: int
    streamed: bool
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_ms: float | None
    cost_usd: Decimal | None
    denied_by: str | None
    shadow_violations: list[str]
    post_violations: list[str]
    upstream_account: str | None


def _token(row: RecentRequest) -> str:
    raw = f"{row.started_at.isoformat()}|{row.request_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _parse_token(token: str) -> tuple[datetime, str]:
    try:
        when, _, request_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return datetime.fromisoformat(when), request_id
    except (ValueError, binascii.Error) as exc:
        raise InvalidError(_KIND, "page_token", "not a token from this list") from exc


class RecentRequests:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def list(
        self,
        *,
        where: UsageFilter | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> Page[RecentRequest]:
        check_page_size(_KIND, page_size)
        f = where or UsageFilter()
        clauses: list[str] = []
        params: list[Any] = []
        for column in ("org_id", "app_id", "environment"):
            value = getattr(f, column)
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if f.model is not None:
            clauses.append("coalesce(served_model, requested_model) = %s")
            params.append(f.model)
        if page_token:
            clauses.append("(started_at, request_id) < (%s, %s)")
            params.extend(_parse_token(page_token))
        query = (
            "SELECT request_id, started_at, org_id, app_id, environment, api_key_id, provider,"
            " coalesce(served_model, requested_model) AS model, decision, status_code, streamed,"
            " prompt_tokens, completion_tokens, total_tokens, latency_ms, cost_usd, denied_by,"
            " shadow_violations, post_violations, upstream_account"
            " FROM usage_metrics"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + " ORDER BY started_at DESC, request_id DESC LIMIT %s"
        )
        params.append(page_size + 1)
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(RecentRequest))
            await cur.execute(query.encode(), params)
            rows = await cur.fetchall()
        items = tuple(rows[:page_size])
        return Page(items, _token(items[-1]) if len(rows) > page_size else None)
