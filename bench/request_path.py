"""CPU of the request path in process, without gRPC: headers and body phases, then the
access log line of the same request read back into its record.

    PYTHONPATH=. python bench/request_path.py

A `PolicyProcessor` per request driven through both phases (every policy type loaded,
in-memory counters, none denying; the body of `hot_path.py`), the two responses
serialised as grpc would, and the reader's work for one JSON chat line. Medians of
``--rounds`` rounds of ``--requests`` requests; process CPU time, so the figure is the
Python work per request that the ext_proc adds on top of a trivial ext_proc's gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import time
from collections.abc import Sequence

from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.tokens import load_estimator
from policy_sidecar.usage.record import UsageRecord
from tests.conftest import KEY, ListRecorder
from tests.extproc.access_lines import line
from tests.extproc.drive import limit_services
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


async def request_path(n: int) -> float:
    services = limit_services(ListRecorder(), _estimator())
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
    services = limit_services(ListRecorder(), _estimator())
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
    args = parser.parse_args()
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
