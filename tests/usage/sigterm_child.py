"""A recorder in its own process, for the SIGTERM restart test.

    python -m tests.usage.sigterm_child fill N      # sink hangs; fill; wait for SIGTERM
    python -m tests.usage.sigterm_child replay DSN  # a fresh process replays the spool

Settings (spool dir, queue and batch sizes, grace period) come from the
environment exactly as the worker reads them. Each step prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Sequence

from policy_sidecar.store.postgres import UsageRepository, open_pool
from policy_sidecar.store.postgres.usage_sink import PostgresUsageSink
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import UsageSink
from policy_sidecar.usage.spool import Spool
from policy_sidecar.wiring.settings import Settings
from tests.usage.helpers import metrics, rec


class HungSink:
    """A database that accepted the connection and never answers."""

    async def write(self, batch: Sequence[UsageRecord]) -> None:
        await asyncio.Event().wait()


def build(settings: Settings, sink: UsageSink) -> BatchingRecorder:
    return BatchingRecorder(
        sink,
        spool=Spool(settings.spool_dir),
        max_batch=settings.usage_batch_size,
        max_delay=settings.usage_batch_delay,
        max_queue=settings.usage_queue_size,
        grace_seconds=settings.grace_seconds,
        metrics=metrics(),
    )


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def fill(n: int) -> None:
    settings = Settings.from_env()
    recorder = build(settings, HungSink())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    recorder.start()
    for i in range(n):
        recorder.record(rec(i, prefix="sig"))
        # Bursts of 100, each once the spool has taken the previous overflow (the
        # overflow is bounded too; this test is about SIGTERM, not about bursts).
        while i % 100 == 99 and recorder.queued > settings.usage_queue_size:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    # Ready when every record is either queued, on disk, or the one batch stuck in
    # the hung write (counting only the queue would miss a spool append in progress).
    while recorder.queued + recorder.spooled < n - settings.usage_batch_size:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    say(queued=recorder.queued, spooled=recorder.spooled)
    await stop.wait()
    await recorder.close()  # the grace period from the settings
    say(queued=recorder.queued, spooled=recorder.spooled, written=recorder.written)


async def replay(dsn: str) -> None:
    settings = Settings.from_env()
    pool = await open_pool(dsn, min_size=1, max_size=2)
    try:
        recorder = build(settings, PostgresUsageSink(UsageRepository(pool)))
        recorder.start()
        await recorder.close(30.0)
    finally:
        await pool.close()
    say(written=recorder.written, replayed=recorder.replayed, dropped=recorder.dropped)


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        asyncio.run(fill(int(sys.argv[2])))
    else:
        asyncio.run(replay(sys.argv[2]))
