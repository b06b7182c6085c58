"""CPU of the access log reader per line: parse, usage from head/tail, settle, record.

    PYTHONPATH=. python bench/access_log_reader.py

In process, no I/O (in-memory counters, a store that accepts at once); a JSON chat
completion line and a streamed one (about 2 KB and 9 KB of log line).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.tokens import load_estimator
from policy_sidecar.usage.record import UsageRecord
from tests.conftest import ListRecorder
from tests.extproc.access_lines import line
from tests.extproc.drive import limit_services
from tests.extproc.test_completion import REQUEST, ROUTE, USAGE, handover, sse_chunks

LINES = 2000


class Accepting:
    async def store(self, records: Sequence[UsageRecord]) -> bool:
        return True


async def main() -> None:
    services = limit_services(ListRecorder(), load_estimator(None))
    consumer = LogConsumer(Completer(services), Accepting())
    body = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    cases = {
        "json": line(handover(), chunks=[body]),
        "sse": line(
            handover(),
            content_type="text/event-stream",
            chunks=sse_chunks(REQUEST, " ".join(["word"] * 300)),
        ),
    }
    for name, text in cases.items():
        await consumer.records([text] * 100)  # warm-up
        started = time.process_time()
        await consumer.records([text] * LINES)
        per_line = (time.process_time() - started) / LINES * 1e6
        print(f"{name}: {len(text)} bytes a line, {per_line:.0f} us CPU a line")


if __name__ == "__main__":
    asyncio.run(main())
