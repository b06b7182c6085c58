"""Usage recorder throughput: records/s through BatchingRecorder into real Postgres.

Three figures, in a throwaway schema that is dropped after:

1. direct: `record()` N records in bursts (the event loop free between bursts, as in
   the sidecar), then `close()`; records/s from the first `record()` until the last
   batch is committed (COPY, idempotent insert, rollups). The queue holds them all.
2. spool replay: the same N records with the sink down (all go to the spool), then
   the sink is back and a new recorder replays the spool; records/s of the replay.
3. `record()` cost on the request path, µs per call.

    PYTHONPATH=. /tmp/v/bin/python bench/recorder_throughput.py [--records N] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry
from psycopg.conninfo import make_conninfo

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.store.postgres import UsageRepository, migrate, open_pool
from policy_sidecar.store.postgres.usage_sink import PostgresUsageSink
from policy_sidecar.usage.cost import Pricing
from policy_sidecar.usage.metrics import RecorderMetrics
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.spool import Spool

DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MODELS = {
    name: ModelDeployment(name, "openai", name, input_price_per_mtok=2.5,
                          cached_input_price_per_mtok=1.25, output_price_per_mtok=10.0)
    for name in ("gpt-4o", "gpt-4o-mini", "o3", "claude")
}  # fmt: skip


def records(n: int, *, prefix: str) -> list[UsageRecord]:
    """500 requests a second from 50 apps over 4 models, 3% denied."""
    rng = random.Random(7)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        denied = rng.random() < 0.03
        prompt, completion = rng.randrange(50, 4000), 0 if denied else rng.randrange(0, 1500)
        out.append(
            UsageRecord(
                request_id=f"{prefix}-{i}", started_at=start + timedelta(seconds=i / 500),
                decision="deny" if denied else "allow", status_code=429 if denied else 200,
                org_id=f"org{rng.randrange(5)}", app_id=f"app_{rng.randrange(50)}",
                environment=rng.choice(("dev", "staging", "production")),
                api_key_id=f"key_{rng.randrange(100)}", provider="openai",
                operation="chat.completions",
                requested_model=rng.choice(tuple(MODELS)), streamed=rng.random() < 0.6,
                prompt_tokens=prompt, completion_tokens=completion,
                total_tokens=prompt + completion, cached_tokens=rng.randrange(0, prompt),
                estimated_tokens=prompt, usage_reported=not denied,
                latency_ms=rng.random() * 4000, ttft_ms=rng.random() * 600,
                request_bytes=rng.randrange(200, 40_000), response_bytes=rng.randrange(0, 20_000),
                denied_by="pol_rate" if denied else None,
            )
        )  # fmt: skip
    return out


class DownSink:
    async def write(self, batch: Sequence[UsageRecord]) -> None:
        raise ConnectionError("down")


def recorder(sink: object, spool_dir: Path, batch: int, queue: int) -> BatchingRecorder:
    return BatchingRecorder(
        sink,  # type: ignore[arg-type]
        spool=Spool(spool_dir),
        pricing=Pricing(MODELS),
        max_batch=batch,
        max_delay=0.2,
        max_queue=queue,
        retries=0,
        metrics=RecorderMetrics(CollectorRegistry()),
    )


async def feed(
    rec: BatchingRecorder, data: Sequence[UsageRecord], *, burst: int = 1000, limit: int
) -> None:
    """Bursts of `burst` records, each once fewer than `limit` wait in memory: as fast
    as the recorder can take them without dropping (the overflow is bounded)."""
    for i in range(0, len(data), burst):
        for r in data[i : i + burst]:
            rec.record(r)
        await asyncio.sleep(0)
        while rec.queued > limit:  # noqa: ASYNC110 - polling the recorder under test
            await asyncio.sleep(0.001)


async def main(n: int, batch: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        dsn = make_conninfo(DSN, options=f"-c search_path={schema}")
        await migrate(dsn)
        pool = await open_pool(dsn, min_size=1, max_size=2)
        sink = PostgresUsageSink(UsageRepository(pool))
        await sink.write(records(batch, prefix="warm"))  # partitions, plans, connection
        with tempfile.TemporaryDirectory() as tmp:
            direct = recorder(sink, Path(tmp) / "a", batch, n)
            direct.start()
            data = records(n, prefix="direct")
            t = time.perf_counter()
            await feed(direct, data, limit=n)
            await direct.close(600)
            elapsed = time.perf_counter() - t
            print(f"direct: records={direct.written} batch={batch} elapsed={elapsed:.2f}s "
                  f"throughput={direct.written / elapsed:,.0f} records/s")  # fmt: skip

            down = recorder(DownSink(), Path(tmp) / "b", batch, batch)
            down.start()
            data = records(n, prefix="spooled")
            t = time.perf_counter()
            await feed(down, data, burst=batch, limit=batch)
            await down.close(0)
            spool_s = time.perf_counter() - t
            replay = recorder(sink, Path(tmp) / "b", batch, n)
            t = time.perf_counter()
            replay.start()
            await replay.close(600)
            elapsed = time.perf_counter() - t
            print(f"spool: records={down.spooled} dropped={down.dropped} to spool {spool_s:.2f}s "
                  f"({down.spooled / spool_s:,.0f} records/s); replay records={replay.replayed} "
                  f"elapsed={elapsed:.2f}s throughput={replay.replayed / elapsed:,.0f} records/s")  # fmt: skip

            hot = recorder(DownSink(), Path(tmp) / "c", batch, n)
            data = records(min(n, 100_000), prefix="hot")
            t = time.perf_counter()
            for r in data:
                hot.record(r)
            per_call = (time.perf_counter() - t) / len(data) * 1e6
            print(f"record(): {per_call:.2f} µs per call, {len(data)} calls")
            await hot.close(0)
        await pool.close()
        print(f"rows in usage_metrics: {sink.inserted} inserted, {sink.duplicates} duplicates")
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.records, args.batch))
