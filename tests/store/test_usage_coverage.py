"""The coverage report: traffic by route and unit, so nothing bypasses metering unseen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from policy_sidecar.store.postgres import InvalidError, Pool, UsageRepository
from policy_sidecar.store.postgres.usage_coverage import UsageCoverage
from policy_sidecar.usage.metering import metered
from policy_sidecar.usage.record import UsageRecord

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _row(rid: str, **kw: object) -> UsageRecord:
    base = UsageRecord(request_id=rid, started_at=T0, decision="allow", status_code=200)
    return metered(UsageRecord(**{**base.to_json_dict(), "started_at": T0, **kw}))  # type: ignore[arg-type]


async def test_coverage_by_route_and_unit(pool: Pool) -> None:
    chat = {"provider": "openai", "operation": "chat", "usage_reported": True}
    await UsageRepository(pool).insert_batch(
        [
            _row("a", **chat, total_tokens=100, cost_usd=0.001),
            _row("b", **chat, total_tokens=50, cost_usd=0.0005),
            # Allowed by unpriced: allow_and_report: no cost.
            _row("c", **chat, total_tokens=30),
            _row("d", provider="openai", operation="chat", decision="deny", status_code=403),
            # Refused before routing (endpoint_not_metered): no route, no unit.
            _row("e", decision="deny", status_code=403),
        ]
    )
    rows = await UsageCoverage(pool).by_route(start=T0, end=T0 + timedelta(hours=1))
    by_route = {(r.provider, r.operation, r.unit): r for r in rows}
    chat_row = by_route[("openai", "chat", "tokens")]
    assert (chat_row.requests, chat_row.allowed, chat_row.denied) == (4, 3, 1)
    assert chat_row.quantity == Decimal(180)
    assert chat_row.cost_usd == Decimal("0.0015")
    assert chat_row.unpriced_allowed == 1
    unrouted = by_route[(None, None, None)]
    assert (unrouted.requests, unrouted.denied, unrouted.quantity) == (1, 1, Decimal(0))
    assert (
        await UsageCoverage(pool).by_route(
            start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2)
        )
        == []
    )


async def test_coverage_range_must_be_aware_and_ordered(pool: Pool) -> None:
    with pytest.raises(InvalidError, match="start/end"):
        await UsageCoverage(pool).by_route(start=T0, end=T0)
