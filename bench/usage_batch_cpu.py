"""The sidecar's CPU per Postgres usage batch, by batch size (the client side only).

    PYTHONPATH=. python bench/usage_batch_cpu.py [--sizes 1,4,16] [--batches 50]

`UsageRepository.insert_batch` as the access log reader calls it (one transaction per
reader batch, through the sidecar's own pool), on uvloop, in a throwaway schema: this
process's CPU and the wall time per batch. Under load the reader's batches hold a few
to a few tens of lines, so the per-batch cost (round trips, not rows) is what a request
pays. Records come from `copy_throughput.records` (not timed).
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime

import psycopg
import uvloop
from psycopg.conninfo import make_conninfo

from bench.copy_throughput import DSN, records
from policy_sidecar.store.postgres import UsageRepository, migrate, open_pool


async def main(sizes: list[int], batches: int) -> None:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        dsn = make_conninfo(DSN, options=f"-c search_path={schema}")
        await migrate(dsn)
        pool = await open_pool(dsn, min_size=1, max_size=2)
        data = records(
            10 + batches * sum(sizes),
            start=datetime(2026, 6, 1, tzinfo=UTC),
            per_second=500,
            apps=50,
        )
        repo = UsageRepository(pool)
        await repo.insert_batch(data[:10])  # partitions, plans, connections
        i = 10
        for size in sizes:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(batches):
                await repo.insert_batch(data[i : i + size])
                i += size
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"batch {size:3d}: {cpu / batches * 1e6:6.0f} us CPU a batch,"
                f" {cpu / batches / size * 1e6:6.0f} us a record; wall {wall / batches * 1e3:6.2f} ms"
            )
        await pool.close()
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    uvloop.run(main([int(s) for s in args.sizes.split(",")], args.batches))
