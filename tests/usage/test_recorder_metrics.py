"""Recorder metrics and the handling of records a sink rejects for good."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from policy_sidecar.store.postgres import UsageRepository
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.postgres.usage_sink import PostgresUsageSink
from policy_sidecar.usage.metrics import (
    BATCH_SIZE,
    DROPPED,
    FLUSH_SECONDS,
    QUEUE_DEPTH,
    REJECTED,
    RETRIED,
    SPOOL_PENDING,
    WRITTEN,
)
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import RejectedBatchError
from policy_sidecar.usage.spool import Spool

from .helpers import SwitchSink, eventually, fast_backoff, metrics, rec, spool_pending


async def test_metrics_follow_the_records(tmp_path: Path) -> None:
    m = metrics()
    sink = SwitchSink(down=True)
    recorder = BatchingRecorder(
        sink, spool=Spool(tmp_path), metrics=m, max_batch=10, max_delay=0.01, retries=1,
        backoff=fast_backoff(),
    )  # fmt: skip
    for i in range(25):
        recorder.record(rec(i))
    assert m.value(QUEUE_DEPTH) == 25  # read at scrape time
    recorder.start()
    await eventually(lambda: m.value(SPOOL_PENDING) == 25)
    assert m.value(QUEUE_DEPTH) == 0
    assert m.value(RETRIED + "_total") >= 10
    sink.down = False
    await recorder.close()
    assert m.value(WRITTEN + "_total") == 25
    assert m.value(SPOOL_PENDING) == 0
    assert m.value(BATCH_SIZE + "_sum") == 25
    assert m.value(BATCH_SIZE + "_count") == m.value(FLUSH_SECONDS + "_count") >= 3
    assert m.value(DROPPED + "_total") == 0


class PickySink(SwitchSink):
    """Refuses any batch holding one of `bad`, like a database refusing a value."""

    def __init__(self, bad: set[str]) -> None:
        super().__init__()
        self.bad = bad

    async def write(self, batch: Sequence[UsageRecord]) -> None:
        if any(r.request_id in self.bad for r in batch):
            raise RejectedBatchError("value out of range")
        await super().write(batch)


@pytest.mark.parametrize("bad", [{"r0"}, {"r7"}, {"r3", "r4", "r19"}])
async def test_rejected_records_are_set_aside_and_the_rest_stored(
    tmp_path: Path, bad: set[str]
) -> None:
    m = metrics()
    sink = PickySink(bad)
    recorder = BatchingRecorder(sink, spool=Spool(tmp_path), metrics=m, max_batch=20)
    for i in range(20):
        recorder.record(rec(i))
    await recorder.close()
    assert sorted(sink.ids) == sorted(f"r{i}" for i in range(20) if f"r{i}" not in bad)
    lines = (tmp_path / "rejected.jsonl").read_text().splitlines()
    assert {json.loads(line)["request_id"] for line in lines} == bad
    assert (recorder.rejected, recorder.dropped) == (len(bad), 0)
    assert m.value(REJECTED + "_total") == len(bad)
    assert spool_pending(tmp_path) == 0  # set aside, never replayed


@pytest.mark.postgres
async def test_postgres_sink_rejects_bad_data_and_stores_the_rest(
    pool: Pool, tmp_path: Path
) -> None:
    sink = PostgresUsageSink(UsageRepository(pool))
    naive = replace(rec(1), started_at=datetime(2026, 3, 1, 12))
    with pytest.raises(RejectedBatchError):
        await sink.write([rec(0), naive])
    recorder = BatchingRecorder(sink, spool=Spool(tmp_path), metrics=metrics())
    for r in (rec(0), naive, rec(2)):
        recorder.record(r)
    await recorder.close()
    assert (sink.inserted, recorder.rejected, recorder.dropped) == (2, 1, 0)
