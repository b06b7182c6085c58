"""The recorder into real Postgres: no loss, no duplicates, across outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from policy_sidecar.store.postgres import UsageRepository, migrate, open_pool
from policy_sidecar.store.postgres.usage_sink import PostgresUsageSink
from policy_sidecar.usage.backoff import Backoff
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.spool import Spool
from tests.store.conftest import BASE_DSN
from tests.store.helpers import make_records

from .conftest import PrivatePostgres
from .helpers import eventually, metrics, spool_pending

pytestmark = pytest.mark.postgres

START = datetime(2026, 5, 1, 22, tzinfo=UTC)  # spans midnight: two day partitions


async def feed(
    recorder: BatchingRecorder, records: Sequence[UsageRecord], *, chunk: int = 100
) -> None:
    """Records arrive in bursts of `chunk` every 10 ms (at most 10,000 a second, several
    times one worker process's request rate), the event loop free between them."""
    for i in range(0, len(records), chunk):
        for r in records[i : i + chunk]:
            recorder.record(r)
        await asyncio.sleep(0.01)


async def counts(dsn: str) -> tuple[int, int, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(
            "SELECT count(*), count(DISTINCT request_id),"
            " (SELECT coalesce(sum(requests), 0) FROM usage_rollup_daily) FROM usage_metrics"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def recorder_for(sink: PostgresUsageSink, spool_dir: Path) -> BatchingRecorder:
    return BatchingRecorder(
        sink,
        spool=Spool(spool_dir),
        max_batch=500,
        max_delay=0.02,
        max_queue=2000,
        retries=2,
        backoff=Backoff(base=0.05, cap=0.5),
        metrics=metrics(),
    )


async def _terminate(application_name: str) -> int:
    async with await psycopg.AsyncConnection.connect(BASE_DSN, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (application_name,),
        )
        row = await cur.fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("disruption", ["none", "terminate-connections"])
async def test_ten_thousand_records_exactly_once(dsn: str, tmp_path: Path, disruption: str) -> None:
    app_name = f"rec-{uuid.uuid4().hex[:8]}"
    pool = await open_pool(make_conninfo(dsn, application_name=app_name), min_size=2, max_size=4)
    try:
        sink = PostgresUsageSink(UsageRepository(pool), timeout=10)
        recorder = recorder_for(sink, tmp_path)
        recorder.start()
        records = make_records(10_000, start=START, span=timedelta(hours=4), prefix="ten")
        if disruption == "none":
            await feed(recorder, records)
        else:
            for part in range(4):
                await feed(recorder, records[part * 2500 : (part + 1) * 2500])
                await eventually(lambda: recorder.written > 0)
                await _terminate(app_name)
        await recorder.close(grace_seconds=60)
    finally:
        await pool.close()
    assert await counts(dsn) == (10_000, 10_000, 10_000)
    assert recorder.dropped == 0
    assert sink.inserted == 10_000
    if disruption == "none":
        # Written once each; some may have gone through the spool when the queue was full.
        assert (recorder.written, recorder.retried) == (10_000, 0)


async def test_postgres_stopped_and_restarted_mid_run(
    private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(private_postgres.dsn, autocommit=True) as c:
        await c.execute(f"CREATE SCHEMA {schema}")
    dsn = make_conninfo(private_postgres.dsn, options=f"-c search_path={schema}")
    await migrate(dsn)
    records = make_records(6000, start=START, span=timedelta(hours=4), prefix="outage")
    pool = await open_pool(dsn, min_size=1, max_size=2, connect_timeout=1.0)
    try:
        sink = PostgresUsageSink(UsageRepository(pool), timeout=5)
        recorder = recorder_for(sink, tmp_path)
        recorder.start()
        await feed(recorder, records[:2000])
        await eventually(lambda: recorder.written >= 1000, seconds=30)
        await asyncio.to_thread(private_postgres.stop, "fast")
        try:
            await feed(recorder, records[2000:4000])
            await eventually(lambda: recorder.spooled > 0, seconds=30)
        finally:
            await asyncio.to_thread(private_postgres.start)
        await feed(recorder, records[4000:])
        await recorder.close(grace_seconds=60)
    finally:
        await pool.close()
    assert await counts(dsn) == (6000, 6000, 6000)
    assert recorder.dropped == 0
    assert recorder.replayed > 0
    assert spool_pending(tmp_path) == 0
