"""Counter round trip on one Redis vs a Redis Cluster (loopback, redis-py asyncio).

    PYTHONPATH=. python bench/redis_round_trip.py [--calls 3000] [--concurrency 32]
        [--redis redis://127.0.0.1:6379/0] [--redis-cluster redis+cluster://h:p,...]

Without ``--redis`` a private redis-server, without ``--redis-cluster`` a private
three-master cluster is started on loopback (redis-server and redis-cli needed): equal
terms for both, where the shared server on 6379 also serves whatever else runs. Measured per store: one ``check_and_add`` of two
counters (a request's rate and token limit: one EVALSHA), one after another (p50/p99),
calls per second with ``--concurrency`` callers on one event loop (one worker), and
the client's CPU time per call in that run (the Python cost of the client: less noisy
than wall-clock figures on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.values import CounterOp, Window, WindowUnit, counter_key
from tests.redis_cluster import LocalRedis, LocalRedisCluster

MINUTE = Window(WindowUnit.MINUTE)
DAY = Window(WindowUnit.DAY)


def ops(org: str) -> list[CounterOp]:
    return [
        CounterOp(counter_key("org", org, "app", "a", "rpm"), 10**12, MINUTE, 1),
        CounterOp(counter_key("org", org, "app", "a", "tpd"), 10**14, DAY, 500),
    ]


async def sequential(store: RedisCounterStore, calls: int) -> list[float]:
    request = ops(f"bench-{uuid.uuid4().hex[:8]}")
    times: list[float] = []
    for i in range(calls + 200):
        start = time.perf_counter()
        await store.check_and_add(request, time.time())
        if i >= 200:  # warm-up
            times.append((time.perf_counter() - start) * 1e6)
    return sorted(times)


async def throughput(store: RedisCounterStore, calls: int, concurrency: int) -> tuple[float, float]:
    # Many orgs: on a cluster their slots spread over every master.
    orgs = [ops(f"bench-{uuid.uuid4().hex[:8]}") for _ in range(concurrency)]
    per_caller = calls // concurrency

    async def caller(request: list[CounterOp]) -> None:
        for _ in range(per_caller):
            await store.check_and_add(request, time.time())

    await asyncio.gather(*(caller(r) for r in orgs))  # warm-up: connections, scripts
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller(r) for r in orgs))
    done = per_caller * concurrency
    return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1e6


async def measure(label: str, url: str, calls: int, concurrency: int) -> None:
    # Longer timeouts than the sidecar's 250 ms (the same for both stores): a loaded
    # machine must slow the figures down, not end the run.
    store = RedisCounterStore.from_url(url, socket_timeout=5.0, connect_timeout=5.0)
    try:
        times = await sequential(store, calls)
        rate, cpu = await throughput(store, calls, concurrency)
    finally:
        await store.aclose()
    p50, p99 = statistics.median(times), times[int(len(times) * 0.99) - 1]
    print(
        f"{label:24s} p50 {p50:6.0f} us   p99 {p99:6.0f} us   "
        f"{rate:6.0f} calls/s at concurrency {concurrency}, client CPU {cpu:4.0f} us/call"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--redis-cluster", default=None)
    args = parser.parse_args()
    for label, url, local in (
        ("one Redis", args.redis, LocalRedis()),
        ("Redis Cluster (3 masters)", args.redis_cluster, LocalRedisCluster()),
    ):
        if url is None:
            local.start()
        try:
            await measure(label, url or local.url, args.calls, args.concurrency)
        finally:
            local.stop()


if __name__ == "__main__":
    asyncio.run(main())
