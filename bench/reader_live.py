"""CPU of the access log reader as it runs: real files, lines arriving one at a time.

    PYTHONPATH=. python bench/reader_live.py [--rate 300] [--seconds 4] [--rounds 3]

``access_log_reader.py`` measures the work per line on a batch of thousands; here the
worker's reader runs as in production — `FileTailer` following a file that another
process appends one JSON chat line to ``--rate`` times a second (as Envoy does), with
`LogConsumer`, `Completer`, the `BatchingRecorder`'s ``store`` into a `JsonlFileSink`,
and the cursor beside the spool — so the per-batch costs (polls, cursor saves, sink
appends, thread hand-offs) are counted too. Prints this process's CPU (every thread)
per line, the batches per second and lines per batch; medians of ``--rounds``. On uvloop,
as the workers run.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import uvloop

from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.tokens import load_estimator
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import JsonlFileSink
from policy_sidecar.usage.spool import Spool
from policy_sidecar.usage.tailer import FileTailer
from tests.conftest import ListRecorder
from tests.extproc.access_lines import line
from tests.extproc.drive import limit_services
from tests.extproc.test_completion import REQUEST, ROUTE, USAGE, handover

WRITER = """
import os, sys, time
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
text = sys.stdin.buffer.read()
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
start = time.monotonic()
n = 0
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    due = int(now * rate) + 1
    while n < due:
        os.write(fd, text)
        n += 1
    time.sleep(max(n / rate - (time.monotonic() - start), 0))
print(n)
"""


class Counting:
    """Counts the batches the tailer hands over."""

    def __init__(self, consume: LogConsumer) -> None:
        self._consume = consume
        self.batches = 0

    async def __call__(self, lines: Sequence[bytes]) -> bool:
        self.batches += 1
        return await self._consume(lines)


async def one_round(workdir: Path, text: bytes, rate: float, seconds: float) -> dict[str, float]:
    services = limit_services(ListRecorder(), load_estimator(None))
    recorder = BatchingRecorder(
        JsonlFileSink(workdir / "usage.jsonl"), spool=Spool(workdir / "spool")
    )
    recorder.start()
    log = workdir / "access.log"
    log.touch()
    counting = Counting(LogConsumer(Completer(services), recorder))
    tailer = FileTailer(log, workdir / "access.cursor", counting)
    tailing = asyncio.create_task(tailer.run())
    await asyncio.sleep(0.3)  # the tailer is at the end of the empty file
    cpu0, wall0, main0 = time.process_time(), time.monotonic(), time.thread_time()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        str(log),
        str(rate),
        str(seconds),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    out, _ = await writer.communicate(text)
    written = int(out)
    while tailer.lines < written:  # noqa: ASYNC110 - polling the tailer, as a test would
        await asyncio.sleep(0.005)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    main = time.thread_time() - main0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    tailer.stop()
    await tailing
    await recorder.close(5)
    return {
        "cpu_us_per_line": cpu / written * 1e6,
        "loop_us_per_line": main / written * 1e6,
        "switches_per_line": (ru.ru_nvcsw - ru0.ru_nvcsw + ru.ru_nivcsw - ru0.ru_nivcsw) / written,
        "lines_per_batch": written / max(counting.batches, 1),
        "batches_per_s": counting.batches / wall,
    }


async def idle_cpu(workdir: Path, seconds: float) -> float:
    """The reader's CPU per second with no lines arriving (its polls)."""
    log = workdir / "idle.log"
    log.touch()
    tailer = FileTailer(log, workdir / "idle.cursor", Counting(None))  # type: ignore[arg-type]
    tailing = asyncio.create_task(tailer.run())
    await asyncio.sleep(0.2)
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu0
    tailer.stop()
    await tailing
    return cpu / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=300, help="lines a second")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    text = line(handover(), chunks=[body]) + b"\n"
    rounds = []
    with tempfile.TemporaryDirectory(prefix="ps-reader-") as tmp:
        for i in range(args.rounds):
            workdir = Path(tmp) / str(i)
            workdir.mkdir()
            rounds.append(uvloop.run(one_round(workdir, text, args.rate, args.seconds)))
            r = rounds[-1]
            print(
                f"round {i + 1}: {r['cpu_us_per_line']:.0f} µs CPU a line "
                f"({r['loop_us_per_line']:.0f} on the event loop's thread), "
                f"{r['switches_per_line']:.1f} context switches a line, "
                f"{r['lines_per_batch']:.1f} lines a batch, {r['batches_per_s']:.0f} batches/s",
                flush=True,
            )
        idle = uvloop.run(idle_cpu(Path(tmp), 2.0))
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(
        f"{args.rate:.0f} lines/s, {len(text)} bytes a line: {med['cpu_us_per_line']:.0f} µs CPU "
        f"a line (median of {args.rounds}), {med['lines_per_batch']:.1f} lines a batch; "
        f"idle: {idle * 1000:.1f} ms CPU a second"
    )


if __name__ == "__main__":
    main()
