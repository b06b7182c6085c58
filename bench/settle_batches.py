"""CPU per access log line with Redis counters, by reader batch size.

    PYTHONPATH=. python bench/settle_batches.py [--redis URL] [--lines 400] [--rounds 5]

Each line is a real request's: a `PolicyProcessor` admits it against Redis counters
(every policy type of `tests/extproc/drive.py`, so two token-limit reservations), and
its access log line (a JSON chat answer) goes through `LogConsumer.records` in batches
of 1, 4 and 10 lines, as the reader hands them over. Process CPU of the batches only
(the admissions are made before timing); medians of ``--rounds``. The settling of a
batch is where the Redis store joins its ``adjust`` calls (`docs/counters.md`).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.request_path import BODY, Accepting
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.handover import to_metadata
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.tokens import load_estimator
from tests.conftest import KEY, ListRecorder
from tests.extproc.access_lines import line
from tests.extproc.drive import limit_services
from tests.extproc.messages import body, request_headers
from tests.extproc.test_completion import REQUEST, ROUTE, USAGE


async def admitted_lines(services: Services, k: int, answer: bytes) -> list[bytes]:
    out = []
    for _ in range(k):
        processor = PolicyProcessor(services)
        await processor.on_request_headers(
            request_headers(KEY, path="/v1/chat/completions", body=BODY)
        )
        await processor.on_request_body(body(BODY))
        facts = processor._facts
        assert facts is not None and facts.charges, "the request reserved nothing"
        out.append(line(to_metadata(facts, worker="1"), chunks=[answer]))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    store = RedisCounterStore.from_url(args.redis)
    services = limit_services(ListRecorder(), load_estimator(None), counters=store)  # type: ignore[arg-type]
    consumer = LogConsumer(Completer(services), Accepting())
    answer = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    try:
        for k in (1, 4, 10):
            per_line = []
            for _ in range(args.rounds):
                batches = [
                    await admitted_lines(services, k, answer) for _ in range(args.lines // k)
                ]
                started = time.process_time()
                for batch in batches:
                    await consumer.records(batch)
                per_line.append((time.process_time() - started) / (len(batches) * k) * 1e6)
            print(f"batches of {k:2d} lines: {statistics.median(per_line):5.0f} us CPU a line")
    finally:
        await store.aclose()


if __name__ == "__main__":
    import uvloop  # as the sidecar runs

    uvloop.run(main())
