"""All workers' metrics as one ``/metrics``, merged at scrape time.

Each worker process keeps its metrics in its own in-memory registry (an observation is
a lock and an add, no file write) and serves them on a loopback port it reports to the
supervisor. On each scrape the supervisor asks every worker and sums the samples of the
same name and labels: counters and histograms (the sidecar has no gauges) add up over
workers exactly as prometheus_client's multi-process mode did.

A worker that does not answer in time (busy, or already gone at shutdown) contributes
its last answer, so no counter ever goes down between two scrapes (Prometheus would
read that as a reset) and none is counted twice.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PREFIX = "policy_sidecar_"
SCRAPE_TIMEOUT = 2.0

# A family: (type, help, samples by (sample name, sorted labels) in first-seen order).
_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Family:
    kind: str
    documentation: str
    samples: dict[_Key, float] = field(default_factory=dict)


def merge_expositions(texts: Iterable[str], prefix: str = PREFIX) -> list[Metric]:
    """The families named ``prefix*`` of several text expositions, samples summed."""
    families: dict[str, _Family] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(prefix):
                continue
            merged = families.setdefault(family.name, _Family(family.type, family.documentation))
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # per worker; a sum means nothing (and no alert uses it)
                key = (sample.name, tuple(sorted(sample.labels.items())))
                merged.samples[key] = merged.samples.get(key, 0.0) + sample.value
    out: list[Metric] = []
    for name, merged in families.items():
        metric = Metric(name, merged.documentation, merged.kind)
        for (sample_name, labels), value in merged.samples.items():
            metric.add_sample(sample_name, dict(labels), value)
        out.append(metric)
    return out


def fetch_exposition(port: int, timeout: float = SCRAPE_TIMEOUT) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text: str = response.read().decode("utf-8")
        return text


class WorkerMetricsCollector(Collector):
    """A collector for the supervisor's registry: every worker's metrics, summed.

    ``ports`` is called on each scrape and returns the workers' metrics ports known so
    far (a worker reports its port once it listens).
    """

    def __init__(
        self,
        ports: Callable[[], Sequence[int]],
        fetch: Callable[[int], str] = fetch_exposition,
    ) -> None:
        self._ports = ports
        self._fetch = fetch
        self._last: dict[int, str] = {}
        self._lock = threading.Lock()  # two concurrent scrapes share the cache

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            for port in self._ports():
                try:
                    self._last[port] = self._fetch(port)
                except OSError as exc:
                    # Keep its last answer: its counters must not drop.
                    log.warning("worker metrics on port %d did not answer: %s", port, exc)
            texts = list(self._last.values())
        return merge_expositions(texts)
