"""CPU of the access log reader per line: parse, usage from head/tail, settle, record.

    PYTHONPATH=. python bench/access_log_reader.py [--cases json,sse,store] [--rounds 5]

In process (in-memory counters), the `LogConsumer` given batches of ``--batch`` lines:

* ``json``: a JSON chat completion line (about 2 KB), a store that accepts at once;
* ``sse``: a streamed chat completion of 200 content chunks (about 9 KB of line: the
  body is larger than the capture's head and tail, so `feed_window` reads it);
* ``store``: the JSON line with the real recorder's durable ``store`` (a
  `BatchingRecorder` into a `JsonlFileSink` in a temporary directory).

Prints the process CPU per line, median of ``--rounds`` rounds of ``--lines`` lines.
For callgrind, one case and few lines (the instruction count per line is the difference
of two such runs over the difference of their line counts):

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \\
        python bench/access_log_reader.py --cases sse --lines 200 --rounds 1 --warmup 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.log_consumer import DurableRecorder, LogConsumer
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.tokens import load_estimator
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import JsonlFileSink
from tests.conftest import ListRecorder
from tests.extproc.access_lines import line
from tests.extproc.drive import limit_services
from tests.extproc.test_completion import REQUEST, ROUTE, USAGE, handover, sse_chunks


class Accepting:
    async def store(self, records: Sequence[UsageRecord]) -> bool:
        return True


def lines() -> dict[str, bytes]:
    body = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    json_line = line(handover(), chunks=[body])
    return {
        "json": json_line,
        "sse": line(
            handover(),
            content_type="text/event-stream",
            chunks=sse_chunks(REQUEST, " ".join(["word"] * 200)),
        ),
        "store": json_line,
    }


async def run(text: bytes, recorder: DurableRecorder, *, n: int, batch: int, rounds: int) -> float:
    consumer = LogConsumer(
        Completer(limit_services(ListRecorder(), load_estimator(None))), recorder
    )
    per_line = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(n // batch):
            assert await consumer(list([text] * batch))
        per_line.append((time.process_time() - started) / (n // batch * batch) * 1e6)
    return statistics.median(per_line)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="json,sse,store")
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    texts = lines()
    with tempfile.TemporaryDirectory(prefix="ps-lines-") as tmp:
        for case in args.cases.split(","):
            text = texts[case]
            recorder: DurableRecorder = Accepting()
            if case == "store":
                recorder = BatchingRecorder(JsonlFileSink(Path(tmp) / "usage.jsonl"))
            await run(text, recorder, n=args.warmup, batch=args.batch, rounds=1)
            us = await run(text, recorder, n=args.lines, batch=args.batch, rounds=args.rounds)
            print(f"{case}: {len(text)} bytes a line, {us:.1f} us CPU a line", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
