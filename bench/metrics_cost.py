"""Cost of one metric observation: in-memory registry (now) vs multi-process files (before).

    python bench/metrics_cost.py

prometheus_client chooses its value class at import, from ``PROMETHEUS_MULTIPROC_DIR``,
so each variant runs in its own interpreter. Measured: a labelled counter increment, a
labelled histogram observation, and ``observe_record`` (what one finished request costs:
request counter, four token counters, two histograms).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

CHILD = """
import timeit
from policy_sidecar.observability import metrics
from tests.usage.helpers import rec

record = rec(1)
for label, stmt in (
    ("counter.labels(...).inc()", lambda: metrics.REQUESTS.labels("openai", "gpt-4o-mini", "allow", "2xx").inc()),
    ("histogram.labels(...).observe()", lambda: metrics.PHASE_DURATION.labels("request_body").observe(0.0004)),
    ("observe_record(record)", lambda: metrics.observe_record(record)),
):
    n = 20000
    best = min(timeit.repeat(stmt, number=n, repeat=5)) / n * 1e6
    print(f"{label:34s} {best:6.2f} us")
"""


def run(label: str, env: dict[str, str]) -> None:
    print(f"{label}:", flush=True)
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True)


def main() -> None:
    base = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    base["PYTHONPATH"] = os.pathsep.join([os.getcwd(), base.get("PYTHONPATH", "")])
    run("in-memory registry per worker (merged at scrape time)", base)
    with tempfile.TemporaryDirectory() as directory:
        run("multi-process mode (mmap files)", {**base, "PROMETHEUS_MULTIPROC_DIR": directory})


if __name__ == "__main__":
    main()
