"""Workers' in-memory registries merged at scrape time, over real loopback HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.parser import text_string_to_metric_families

from policy_sidecar.observability.merge import WorkerMetricsCollector, merge_expositions


class Worker:
    """One worker's registry with the shapes the sidecar uses, served on loopback."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "policy_sidecar_requests", "Requests.", ["decision"], registry=self.registry
        )
        self.phase = Histogram(
            "policy_sidecar_phase_duration_seconds",
            "Phase time.",
            ["phase"],
            buckets=(0.001, 0.01),
            registry=self.registry,
        )
        self.other = Counter("unrelated_things", "Not ours.", registry=self.registry)
        server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.server: ThreadingHTTPServer = server
        self.port = int(server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started = [Worker(), Worker()]
    yield started
    for worker in started:
        with contextlib.suppress(OSError):
            worker.stop()


def values(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_and_histograms_add_up_over_workers(workers: list[Worker]) -> None:
    a, b = workers
    a.requests.labels("allow").inc(3)
    b.requests.labels("allow").inc(4)
    b.requests.labels("deny").inc()
    a.phase.labels("request_body").observe(0.0005)
    b.phase.labels("request_body").observe(0.005)
    a.other.inc()
    registry = CollectorRegistry()
    registry.register(WorkerMetricsCollector(lambda: [a.port, b.port]))

    merged = values(registry)

    assert merged[("policy_sidecar_requests_total", (("decision", "allow"),))] == 7
    assert merged[("policy_sidecar_requests_total", (("decision", "deny"),))] == 1
    body = (("phase", "request_body"),)
    assert merged[("policy_sidecar_phase_duration_seconds_count", body)] == 2
    assert merged[("policy_sidecar_phase_duration_seconds_sum", body)] == pytest.approx(0.0055)
    le = {k[1]: v for k, v in merged.items() if k[0].endswith("_bucket")}
    assert le[(("le", "0.001"), ("phase", "request_body"))] == 1
    assert le[(("le", "0.01"), ("phase", "request_body"))] == 2
    assert le[(("le", "+Inf"), ("phase", "request_body"))] == 2
    # Only the sidecar's families; no per-worker creation times summed into nonsense.
    assert not any(name.startswith("unrelated") or name.endswith("_created") for name, _ in merged)


def test_a_worker_that_stops_answering_keeps_its_last_values(workers: list[Worker]) -> None:
    a, b = workers
    a.requests.labels("allow").inc(2)
    b.requests.labels("allow").inc(5)
    registry = CollectorRegistry()
    registry.register(WorkerMetricsCollector(lambda: [a.port, b.port]))
    key = ("policy_sidecar_requests_total", (("decision", "allow"),))
    assert values(registry)[key] == 7

    b.stop()  # gone (or too busy to answer): its counters must not drop
    a.requests.labels("allow").inc()

    assert values(registry)[key] == 8
    assert values(registry)[key] == 8  # and scraping again does not add it twice


def test_merge_of_nothing_is_empty() -> None:
    assert merge_expositions([]) == []
