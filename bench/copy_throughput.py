"""Usage COPY throughput: UsageRepository.insert_batch rows/s against real Postgres.

Each batch is one transaction: binary COPY into a temp table, idempotent INSERT
into the partitioned table, and the hourly/daily/denial rollup upserts. Records
are generated up front (not timed), in a throwaway schema that is dropped after.

    PYTHONPATH=. /tmp/v/bin/python bench/copy_throughput.py [--rows N] [--batch N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.conninfo import make_conninfo

from policy_sidecar.store.postgres import UsageRepository, migrate, open_pool
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.usage.record import UsageRecord

DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def records(n: int, *, start: datetime, per_second: int, apps: int) -> list[UsageRecord]:
    """`per_second` requests a second from `apps` applications over 4 models."""
    rng = random.Random(42)
    out = []
    for i in range(n):
        prompt, completion = rng.randrange(50, 4000), rng.randrange(0, 1500)
        denied = rng.random() < 0.03
        out.append(
            UsageRecord(
                request_id=f"bench-{i}",
                started_at=start + timedelta(seconds=i / per_second),
                decision="deny" if denied else "allow",
                status_code=429 if denied else 200,
                org_id=f"org{rng.randrange(5)}",
                app_id=f"app_{rng.randrange(apps)}",
                environment=rng.choice(("dev", "staging", "production")),
                api_key_id=f"key_{rng.randrange(apps * 2)}",
                provider="openai",
                operation="chat.completions",
                requested_model=rng.choice(("gpt-4o", "gpt-4o-mini", "o3", "claude")),
                served_model=None,
                streamed=rng.random() < 0.6,
                prompt_tokens=prompt,
                completion_tokens=0 if denied else completion,
                total_tokens=prompt + (0 if denied else completion),
                estimated_tokens=prompt,
                usage_reported=not denied,
                latency_ms=rng.random() * 4000,
                ttft_ms=rng.random() * 600,
                request_bytes=rng.randrange(200, 40_000),
                response_bytes=rng.randrange(0, 20_000),
                cost_usd=rng.random() / 50,
                denied_by="pol_rate" if denied else None,
            )
        )
    return out


@asynccontextmanager
async def throwaway_pool(dsn: str = DSN) -> AsyncIterator[Pool]:
    """A pool on a migrated schema of its own, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        scoped = make_conninfo(dsn, options=f"-c search_path={schema}")
        await migrate(scoped)
        pool = await open_pool(scoped, min_size=1, max_size=2)
        try:
            yield pool
        finally:
            await pool.close()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def main(rows: int, batch: int, per_second: int, apps: int) -> None:
    async with throwaway_pool() as pool:
        data = records(rows, start=datetime(2026, 6, 1, tzinfo=UTC), per_second=per_second,
                       apps=apps)  # fmt: skip
        repo = UsageRepository(pool)
        await repo.insert_batch(data[:batch])  # warm-up: partitions, plans, connection
        t = time.perf_counter()
        inserted = 0
        for i in range(batch, rows, batch):
            inserted += await repo.insert_batch(data[i : i + batch])
        elapsed = time.perf_counter() - t
        retry_t = time.perf_counter()
        await repo.insert_batch(data[batch : 2 * batch])  # an idempotent retry
        retry = time.perf_counter() - retry_t
        print(
            f"rows={inserted} batch={batch} per_second={per_second} apps={apps} "
            f"elapsed={elapsed:.2f}s throughput={inserted / elapsed:,.0f} rows/s "
            f"retry_of_one_batch={retry * 1000:.0f}ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--per-second", type=int, default=500, help="simulated request rate")
    parser.add_argument("--apps", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.batch, args.per_second, args.apps))
