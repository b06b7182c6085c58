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
from datetime import UTC, datetime

import uvloop

from bench.copy_throughput import records, throwaway_pool
from policy_sidecar.store.postgres import UsageRepository


async def main(sizes: list[int], batches: int) -> None:
    async with throwaway_pool() as pool:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16")
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    uvloop.run(main([int(s) for s in args.sizes.split(",")], args.batches))
