"""The batching recorder: never blocks, batches, retries, flushes everything on close."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import JsonlFileSink


def rec(i: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"r{i}",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        decision="allow",
        status_code=200,
    )


class FlakySink:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[list[str]] = []

    async def write(self, batch: Sequence[UsageRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("disk on fire")
        self.batches.append([r.request_id for r in batch])


async def test_batches_by_size_and_flushes_on_close() -> None:
    sink = FlakySink(0)
    recorder = BatchingRecorder(sink, max_batch=10, max_delay=0.05)
    recorder.start()
    for i in range(25):
        recorder.record(rec(i))
    await recorder.close()
    assert [len(b) for b in sink.batches] == [10, 10, 5]
    assert [r for b in sink.batches for r in b] == [f"r{i}" for i in range(25)]
    assert recorder.written == 25


async def test_batches_by_time() -> None:
    sink = FlakySink(0)
    recorder = BatchingRecorder(sink, max_batch=1000, max_delay=0.02)
    recorder.start()
    recorder.record(rec(1))
    for _ in range(100):
        if sink.batches:
            break
        await asyncio.sleep(0.01)
    assert sink.batches == [["r1"]]
    await recorder.close()


async def test_failed_batch_is_retried_not_lost() -> None:
    sink = FlakySink(2)
    recorder = BatchingRecorder(sink, max_batch=5, max_delay=0.01)
    recorder.start()
    for i in range(5):
        recorder.record(rec(i))
    await recorder.close()
    assert sink.batches == [[f"r{i}" for i in range(5)]]


async def test_jsonl_sink_appends_lines(tmp_path: Path) -> None:
    sink = JsonlFileSink(tmp_path / "sub" / "usage.jsonl")
    await sink.write([rec(1), rec(2)])
    await sink.write([rec(3)])
    lines = (tmp_path / "sub" / "usage.jsonl").read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == ["r1", "r2", "r3"]
    assert json.loads(lines[0])["started_at"] == "2026-01-01T00:00:00+00:00"
