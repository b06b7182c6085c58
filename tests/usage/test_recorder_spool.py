"""The recorder with a spool: queue overflow, sink outages, crashes, grace expiry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.usage.cost import Pricing
from policy_sidecar.usage.metrics import DROPPED, REPLAYED, SPOOLED, WRITTEN
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.spool import Spool

from .helpers import SwitchSink, eventually, fast_backoff, metrics, rec, spool_pending

IDS = [f"r{i}" for i in range(100)]


def make(sink: SwitchSink, spool_dir: Path, **kw: object) -> BatchingRecorder:
    options: dict[str, object] = {
        "max_batch": 10,
        "max_delay": 0.01,
        "retries": 1,
        "backoff": fast_backoff(),
        "metrics": metrics(),
    }
    options.update(kw)
    if "spool" not in options:
        options["spool"] = Spool(spool_dir, segment_bytes=2048)
    return BatchingRecorder(sink, **options)  # type: ignore[arg-type]


async def test_full_queue_spills_to_spool_and_replays_in_order(tmp_path: Path) -> None:
    sink = SwitchSink()
    recorder = make(sink, tmp_path, max_queue=10, max_overflow=100)
    m = recorder._m
    recorder.start()
    for i in range(50):  # no await: the writer cannot take anything meanwhile
        recorder.record(rec(i))
    assert recorder.queued == 50
    await recorder.close()
    assert sorted(sink.ids) == sorted(IDS[:50])
    assert len(sink.ids) == 50
    from_spool = [i for i in sink.ids if int(i[1:]) >= 10]
    assert from_spool == IDS[10:50]
    assert (m.value(SPOOLED + "_total"), m.value(REPLAYED + "_total")) == (40, 40)
    assert m.value(WRITTEN + "_total") == 50
    assert recorder.dropped == 0


async def test_sink_outage_goes_to_spool_and_recovers_exactly_once(tmp_path: Path) -> None:
    sink = SwitchSink(down=True)
    recorder = make(sink, tmp_path)
    recorder.start()
    for i in range(30):
        recorder.record(rec(i))
    await eventually(lambda: recorder.spooled == 30)
    assert sink.ids == []
    assert recorder.queued == 0  # memory stays small while the sink is down
    sink.down = False
    for i in range(30, 40):
        recorder.record(rec(i))
    await eventually(lambda: recorder.written == 40)
    await recorder.close()
    assert sorted(sink.ids) == sorted(IDS[:40])
    assert [i for i in sink.ids if int(i[1:]) < 30] == IDS[:30]  # the spool replays in order
    assert recorder.retried > 0
    assert recorder.replayed >= 30


async def test_spool_survives_a_crash_and_the_next_instance_replays_it_first(
    tmp_path: Path,
) -> None:
    sink = SwitchSink(down=True)
    first = make(sink, tmp_path)
    first.start()
    for i in range(20):
        first.record(rec(i))
    await eventually(lambda: first.spooled == 20)
    # The crash: the task dies, the process' file descriptors (and the lock) go.
    assert first._task is not None and first._spool is not None
    first._task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first._task
    first._spool.close()

    good = SwitchSink()
    second = make(good, tmp_path)
    second.start()
    for i in range(20, 30):
        second.record(rec(i))
    await second.close()
    assert good.ids == IDS[:30]


@pytest.mark.parametrize("in_flight", [True, False], ids=["write-in-flight", "sink-down"])
async def test_grace_expiry_leaves_the_rest_in_spool_for_next_start(
    tmp_path: Path, in_flight: bool
) -> None:
    sink = SwitchSink(down=not in_flight)
    if in_flight:
        sink.released.clear()
    recorder = make(sink, tmp_path, retries=100)
    recorder.start()
    for i in range(25):
        recorder.record(rec(i))
    await eventually(lambda: sink.failures > 0 or recorder._writer.in_flight)
    await recorder.close(grace_seconds=0.05)
    assert sink.ids == []
    assert recorder.spooled == 25
    recorder.record(rec(99))  # after close: refused loudly, not silently lost
    assert recorder.dropped == 1

    good = SwitchSink()
    again = make(good, tmp_path)
    again.start()
    await again.close()
    assert good.ids == IDS[:25]
    assert spool_pending(tmp_path) == 0


class BrokenDiskSpool(Spool):
    def append(self, records: Sequence[UsageRecord]) -> None:
        raise OSError(28, "No space left on device")


async def test_spool_disk_failure_drops_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = SwitchSink(down=True)
    recorder = make(sink, tmp_path, spool=BrokenDiskSpool(tmp_path), retries=0)
    recorder.start()
    for i in range(10):
        recorder.record(rec(i))
    with caplog.at_level(logging.ERROR, logger="policy_sidecar.usage.recorder"):
        await eventually(lambda: recorder.dropped == 10)
        await recorder.close(grace_seconds=0.01)
    assert recorder._m.value(DROPPED + "_total") == 10
    assert any("USAGE RECORDS LOST" in r.getMessage() for r in caplog.records)


async def test_cost_is_filled_in_before_the_sink(tmp_path: Path) -> None:
    sink = SwitchSink()
    captured: list[float | None] = []
    original = sink.write

    async def write(batch: Sequence[UsageRecord]) -> None:
        captured.extend(r.cost_usd for r in batch)
        await original(batch)

    sink.write = write  # type: ignore[method-assign]
    model = ModelDeployment(
        "gpt-4o-mini", "openai", "gpt-4o-mini", input_price_per_mtok=1.0, output_price_per_mtok=2.0
    )
    prices = {"gpt-4o-mini": model}
    recorder = make(sink, tmp_path, pricing=Pricing(prices))
    recorder.start()
    recorder.record(rec(0))  # 100 prompt, 20 completion tokens
    await recorder.close()
    assert captured == [pytest.approx((100 * 1.0 + 20 * 2.0) / 1e6)]


async def test_idle_writer_replays_what_the_overflow_spooled(tmp_path: Path) -> None:
    sink = SwitchSink()
    recorder = make(sink, tmp_path, max_batch=5, max_queue=5, max_overflow=100, max_delay=60.0)
    recorder.start()
    for i in range(15):  # a full batch queued, 10 overflow; then no traffic at all
        recorder.record(rec(i))
    await eventually(lambda: len(sink.ids) == 15)
    assert recorder.spooled == 10
    await recorder.close()
