"""Two timings that used to be wall-clock asserts in the tests (they flaked on a loaded
machine): how long an unreachable Redis takes to become `CounterStoreUnavailable`
(the hot path fails open or closed after that), and how long the token estimator takes
on a 5 MB prompt.

    python bench/failure_latency.py [--runs 5]

Prints the median and the worst of the runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from policy_sidecar.cli.ports import free_port
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.values import CounterOp, CounterStoreUnavailable, Window, WindowUnit
from policy_sidecar.providers.base import ParsedRequest
from policy_sidecar.tokens import load_estimator


async def unreachable_redis_ms() -> float:
    store = RedisCounterStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    op = CounterOp("ps:{app:x}:a", 5, Window(WindowUnit.MINUTE, 1), 1)
    started = time.perf_counter()
    try:
        await store.check_and_add([op], time.time())
    except CounterStoreUnavailable:
        pass
    else:
        raise SystemExit("a Redis answered on a free port")
    finally:
        await store.aclose()
    return (time.perf_counter() - started) * 1000


def estimate_5mb_ms() -> float:
    estimator = load_estimator()
    parsed = ParsedRequest("gpt-4o", False, None, extra_text=("word " * 1_000_000,))
    started = time.perf_counter()
    estimator.estimate("openai", parsed)
    return (time.perf_counter() - started) * 1000


def report(name: str, samples: list[float]) -> None:
    print(f"{name}: median {statistics.median(samples):.1f} ms, worst {max(samples):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    report(
        "unreachable Redis -> unavailable",
        [asyncio.run(unreachable_redis_ms()) for _ in range(args.runs)],
    )
    report("estimate a 5 MB prompt", [estimate_5mb_ms() for _ in range(args.runs)])


if __name__ == "__main__":
    main()
