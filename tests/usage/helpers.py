"""Helpers for the recorder tests: records, controllable sinks, fresh metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from policy_sidecar.usage.backoff import Backoff
from policy_sidecar.usage.metrics import RecorderMetrics
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.spool import Spool

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def rec(i: int, *, prefix: str = "r") -> UsageRecord:
    return UsageRecord(
        request_id=f"{prefix}{i}",
        started_at=T0 + timedelta(milliseconds=i),
        decision="allow",
        status_code=200,
        org_id="org1",
        app_id="app1",
        environment="dev",
        requested_model="gpt-4o-mini",
        prompt_tokens=100 + i % 7,
        completion_tokens=20,
        total_tokens=120 + i % 7,
        usage_reported=True,
        latency_ms=12.5,
    )


def metrics() -> RecorderMetrics:
    return RecorderMetrics(CollectorRegistry())


def fast_backoff() -> Backoff:
    return Backoff(base=0.01, cap=0.05)


class SwitchSink:
    """Stores request ids in order; fails while `down`, hangs while `released` is clear."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.released = asyncio.Event()
        self.released.set()
        self.ids: list[str] = []
        self.batches: list[int] = []
        self.failures = 0

    async def write(self, batch: Sequence[UsageRecord]) -> None:
        await self.released.wait()
        if self.down:
            self.failures += 1
            raise ConnectionError("sink down")
        self.ids.extend(r.request_id for r in batch)
        self.batches.append(len(batch))


async def eventually(predicate: object, *, seconds: float = 10.0) -> None:
    """Wait until `predicate()` is true; the timeout is a safety net, not an assertion
    about speed."""
    assert callable(predicate)
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polling state owned by the code under test
            await asyncio.sleep(0.005)


def spool_pending(directory: Path) -> int:
    """Records left in the spool at `directory` (opened and closed again)."""
    spool = Spool(directory)
    try:
        return spool.pending
    finally:
        spool.close()
