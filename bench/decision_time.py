"""Sidecar decision time: headers + body phases of the policy filter, in-process.

    python bench/decision_time.py [--requests 3000] [--redis redis://127.0.0.1:6379/0]
        [--redis-cluster [redis+cluster://host:port,...]]

``--redis-cluster`` alone starts a private three-master cluster on loopback (needs
redis-server and redis-cli) and adds its line beside the single Redis's.

Five policies apply to the caller: model_allowlist, request_size, custom_cel (pre
check), rate_limit and token_limit (the two counters: one round trip). Measured is
the time from the request-headers message to the body response, i.e. what the policy
filter adds before the request may leave, minus gRPC transport. Then the Redis round
trip alone: one ``check_and_add`` of the two counters (one EVALSHA: every counter of a
decision goes in one script call) and a PING, with the reply parser redis-py uses
(hiredis when installed, a dependency since issue 13).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

from redis.utils import HIREDIS_AVAILABLE

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import CounterOp, Window, WindowUnit, counter_key
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.source import StaticPolicySource
from policy_sidecar.providers import default_registry
from policy_sidecar.store.standalone import StandaloneIdentityResolver, parse_standalone_config
from policy_sidecar.tokens import load_estimator
from tests.extproc.messages import body, request_headers
from tests.redis_cluster import LocalRedisCluster

KEY = "ps-bench-key-0123456789abcdef"


def config(org: str) -> str:
    return f"""
applications: [{{id: app, org_id: {org}, keys: [{{environment: prod, key: {KEY}}}]}}]
models: [{{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}]
policies:
  - {{id: p1, name: models, type: model_allowlist, config: {{models: ["gpt-4o*"]}}}}
  - {{id: p2, name: size, type: request_size, config: {{max_bytes: 1048576}}}}
  - {{id: p3, name: cel, type: custom_cel, config: {{pre_check_expression: "estimated_tokens < 100000 && model.startsWith('gpt')"}}}}
  - {{id: p4, name: rpm, type: rate_limit, config: {{requests: 100000000, window: 1m}}}}
  - {{id: p5, name: tpd, type: token_limit, config: {{limit: 100000000000, window: 1d}}}}
"""


class NullRecorder:
    def record(self, record: object) -> None:
        pass


async def run(counters: CounterStore, n: int) -> list[float]:
    cfg = parse_standalone_config(config(f"bench-{uuid.uuid4().hex[:6]}"), source="bench")
    services = Services(
        identities=StandaloneIdentityResolver(cfg.keys),
        policies=StaticPolicySource(PolicyEngine(cfg.policies)),
        enforcer=Enforcer(counters, InMemoryPenaltyBox()),
        providers=default_registry(),
        estimator=load_estimator(),
        recorder=NullRecorder(),
        models=cfg.models,
    )
    data = json.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You are a terse assistant. " * 8},
                {"role": "user", "content": "Summarise the benefits of an ext_proc sidecar. " * 14},
            ],
            "max_tokens": 64,
        }
    ).encode()
    headers, chunk = request_headers(KEY, body=data), body(data)
    times: list[float] = []
    for i in range(n + 200):
        start = time.perf_counter()
        processor = PolicyProcessor(services)
        await processor.on_request_headers(headers)
        response = await processor.on_request_body(chunk)
        elapsed = time.perf_counter() - start
        assert response.WhichOneof("response") == "request_body", response
        if i >= 200:  # warm-up
            times.append(elapsed * 1e6)
    services.estimator.close()
    return times


def report(label: str, times: list[float]) -> None:
    times.sort()
    p50 = statistics.median(times)
    p99 = times[int(len(times) * 0.99) - 1]
    print(f"{label:44s} p50 {p50:7.0f} us   p99 {p99:7.0f} us   ({len(times)} samples)")


async def round_trips(store: RedisCounterStore, n: int) -> None:
    tag = uuid.uuid4().hex[:8]
    ops = [
        CounterOp(counter_key("app", tag, "rpm"), 10**9, Window(WindowUnit.MINUTE), 1),
        CounterOp(counter_key("app", tag, "tpd"), 10**12, Window(WindowUnit.DAY), 300),
    ]
    checks: list[float] = []
    pings: list[float] = []
    for i in range(n + 200):
        start = time.perf_counter()
        await store.check_and_add(ops, time.time())
        middle = time.perf_counter()
        await store.client.ping()
        end = time.perf_counter()
        if i >= 200:
            checks.append((middle - start) * 1e6)
            pings.append((end - middle) * 1e6)
    await store.client.delete(*[op.key for op in ops])
    parser = "hiredis" if HIREDIS_AVAILABLE else "pure-Python"
    report(f"Redis check_and_add, 2 counters ({parser})", checks)
    report(f"Redis PING ({parser})", pings)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-cluster", nargs="?", const="start", default=None)
    args = parser.parse_args()
    report("in-process counters", await run(InMemoryCounterStore(), args.requests))
    redis_store = RedisCounterStore.from_url(args.redis)
    try:
        report("Redis counters (loopback)", await run(redis_store, args.requests))
        await round_trips(redis_store, args.requests)
    finally:
        await redis_store.aclose()
    if args.redis_cluster is None:
        return
    local = LocalRedisCluster() if args.redis_cluster == "start" else None
    if local is not None:
        local.start()
    try:
        cluster_store = RedisCounterStore.from_url(local.url if local else args.redis_cluster)
        try:
            report("Redis Cluster counters", await run(cluster_store, args.requests))
        finally:
            await cluster_store.aclose()
    finally:
        if local is not None:
            local.stop()


if __name__ == "__main__":
    asyncio.run(main())
