"""CPU of the request path in process, without gRPC: headers and body phases, then the
access log line of the same request read back into its record.

    PYTHONPATH=. python bench/request_path.py [--redis redis://127.0.0.1:6379/0] [--penalty]

A `PolicyProcessor` per request driven through both phases (every policy type loaded,
in-memory counters, none denying; the body of `hot_path.py`), the two responses
serialised as grpc would, and the reader's work for one JSON chat line. Medians of
``--rounds`` rounds of ``--requests`` requests; process CPU time, so the figure is the
Python work per request that the ext_proc adds on top of a trivial ext_proc's gRPC.

``--redis URL`` counts on that Redis instead (`RedisCounterStore` and `RedisPenaltyBox`,
as the sidecar wires them): the figures then include the client's work for the
request's counter call and the reader's settle, and the process's wait for Redis is
not CPU. ``--penalty`` adds a post-check with a penalty, so admission also reads the
caller's penalty.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace

from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import RedisPenaltyBox
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.source import StaticPolicySource
from policy_sidecar.store.standalone import StandaloneIdentityResolver, parse_standalone_config
from policy_sidecar.tokens import load_estimator
from policy_sidecar.usage.record import UsageRecord
from tests.conftest import KEY, ListRecorder
from tests.extproc.access_lines import line
from tests.extproc.drive import CONFIG, limit_services
from tests.extproc.messages import body, request_headers
from tests.extproc.test_completion import REQUEST, ROUTE, USAGE, handover

BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a terse assistant. " * 8},
            {"role": "user", "content": "Summarise the benefits of an ext_proc sidecar. " * 14},
        ],
        "max_tokens": 64,
    }
).encode()


# Loaded once per process (a second or two, a minute under callgrind); immutable.
_estimator = functools.cache(lambda: load_estimator(None))


class Accepting:
    async def store(self, records: Sequence[UsageRecord]) -> bool:
        return True


# A post-check that never fails, with a penalty: admission reads the caller's penalty.
PENALTY = """
  - id: p-penalty
    name: penalised post-check
    type: custom_cel
    config: {post_check_expression: "total_tokens >= 0", penalty_seconds: 30}
"""


class Options:
    redis: str | None = None
    penalty: bool = False
    stores: list[RedisCounterStore] = []


def services_for(options: type[Options]) -> Services:
    """`limit_services`, on Redis and with a penalty when asked; each call its own org
    (the fake clock stays put: fresh keys keep the counters' figures alike)."""
    services = limit_services(ListRecorder(), _estimator())
    org = f"org-{uuid.uuid4().hex[:8]}"
    config = CONFIG.replace("org_id: org1", f"org_id: {org}")
    if options.penalty:
        config += PENALTY
    parsed = parse_standalone_config(config, source="limits.yaml")
    services = replace(
        services,
        policies=StaticPolicySource(PolicyEngine(parsed.policies)),
        identities=StandaloneIdentityResolver(parsed.keys),
    )
    if options.redis is None:
        return services
    store = RedisCounterStore.from_url(options.redis, socket_timeout=30, connect_timeout=30)
    options.stores.append(store)
    enforcer = Enforcer(store, RedisPenaltyBox(store.client), services.clock)
    return replace(services, enforcer=enforcer)


async def request_path(n: int) -> float:
    services = services_for(Options)
    headers = request_headers(KEY, path="/v1/chat/completions", body=BODY)
    data = body(BODY)
    started = time.process_time()
    for _ in range(n):
        processor = PolicyProcessor(services)
        first = await processor.on_request_headers(headers)
        second = await processor.on_request_body(data)
        first.SerializeToString()
        second.SerializeToString()
        assert second.HasField("request_body"), second
    return (time.process_time() - started) / n * 1e6


async def reader(n: int) -> float:
    services = services_for(Options)
    consumer = LogConsumer(Completer(services), Accepting())
    text = line(
        handover(), chunks=[build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body]
    )
    started = time.process_time()
    for _ in range(n // 10):
        await consumer.records([text] * 10)
    return (time.process_time() - started) / (n // 10 * 10) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    # One part alone, e.g. under callgrind (instructions of 600 requests minus 200).
    parser.add_argument("--part", choices=("both", "path", "line"), default="both")
    parser.add_argument("--redis", default=None, help="count on this Redis (URL)")
    parser.add_argument("--penalty", action="store_true", help="a post-check with a penalty")
    args = parser.parse_args()
    Options.redis, Options.penalty = args.redis, args.penalty
    try:
        await run(args)
    finally:
        for store in Options.stores:
            await store.aclose()


async def run(args: argparse.Namespace) -> None:
    if args.part != "line":
        await request_path(200)  # warm-up
        paths = [await request_path(args.requests) for _ in range(args.rounds)]
        print(f"request path (headers + body, serialised): {statistics.median(paths):.0f} us CPU")
    if args.part != "path":
        await reader(200)
        lines = [await reader(args.requests) for _ in range(args.rounds)]
        print(f"access log line (JSON chat, batches of 10): {statistics.median(lines):.0f} us CPU")


if __name__ == "__main__":
    asyncio.run(main())
