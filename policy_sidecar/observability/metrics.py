"""Prometheus metrics of the sidecar: every name and label in one place.

Each worker process keeps them in its own in-memory registry; the supervisor asks every
worker at scrape time and serves the sums (``observability.merge``). The core returns
facts; only the edges record them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from policy_sidecar.usage.record import UsageRecord

NAMESPACE = "policy_sidecar"
# High-cardinality labels (application, model) can be folded into "all"
# (Settings.metrics_detailed_labels, set in each worker by the wiring).
DETAILED = True
ALL = "all"

REQUESTS = Counter(
    "requests",
    "Requests seen by the sidecar, by provider, model, decision and status class.",
    ["provider", "model", "decision", "status_class"],
    namespace=NAMESPACE,
)
POLICY_DECISIONS = Counter(
    "policy_decisions",
    "Policy outcomes that were not a plain allow: deny, shadow_deny, post_violation.",
    ["policy_type", "policy_id", "outcome"],
    namespace=NAMESPACE,
)
TOKENS = Counter(
    "tokens",
    "Tokens the providers reported, by application, model and kind.",
    ["app", "model", "kind"],
    namespace=NAMESPACE,
)
REQUEST_DURATION = Histogram(
    "request_duration_seconds",
    "From the request reaching the sidecar to the end of the response.",
    ["provider"],
    namespace=NAMESPACE,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
TIME_TO_FIRST_TOKEN = Histogram(
    "time_to_first_token_seconds",
    "From the request reaching the sidecar to the first response body byte.",
    ["provider"],
    namespace=NAMESPACE,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PHASE_DURATION = Histogram(
    "phase_duration_seconds",
    "Sidecar time spent answering one ext_proc phase of the policy filter.",
    ["phase"],
    namespace=NAMESPACE,
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5),
)
COUNTER_STORE_ERRORS = Counter(
    "counter_store_errors",
    "Calls to the counter store (Redis) that failed; fail_mode decided the request.",
    ["operation"],
    namespace=NAMESPACE,
)
CACHE_REQUESTS = Counter(
    "cache_requests",
    "Lookups in the production caches by cache and result (hit, redis, store, miss;"
    " identities also negative_hit, shared, throttled).",
    ["cache", "result"],
    namespace=NAMESPACE,
)
WORKER_REQUESTS = Counter(
    "worker_requests",
    "Requests (policy streams) each worker process received, by its ext_proc port:"
    " shows whether Envoy spreads the load evenly.",
    ["worker"],
    namespace=NAMESPACE,
)
OVERLOAD_REJECTIONS = Counter(
    "overload_rejections",
    "Requests answered 503 at once because the worker's in-flight bound was reached.",
    namespace=NAMESPACE,
)
STORE_ERRORS = Counter(
    "store_errors",
    "Failed reads of the production store (Postgres) by what was being read.",
    ["what"],
    namespace=NAMESPACE,
)


def set_detailed_labels(detailed: bool) -> None:
    global DETAILED
    DETAILED = detailed


# Model and application names come from requests (a client can send any model name):
# each process labels at most this many distinct values per label, the rest as "other",
# so no client can grow the exposition without bound.
MAX_LABEL_VALUES = 500
OTHER = "other"
_seen_labels: dict[str, set[str]] = {}


def _label(value: str | None, name: str) -> str:
    if not DETAILED:
        return ALL
    if not value:
        return "unknown"
    seen = _seen_labels.setdefault(name, set())
    if value in seen:
        return value
    if len(seen) >= MAX_LABEL_VALUES:
        return OTHER
    seen.add(value)
    return value


# Each metric's children by label values: ``labels()`` validates and locks on every
# call (about 1 µs); the children never change once made (nothing removes them). Bounded
# like the labels themselves (MAX_LABEL_VALUES per request-derived label).
_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def _child(metric: Counter | Histogram, *values: str) -> Any:
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def observe_record(record: UsageRecord) -> None:
    """Request, token and latency metrics from a finished request's usage record."""
    observe_records((record,))


def observe_records(records: Iterable[UsageRecord]) -> None:
    """`observe_record` for each of ``records`` (the access log reader's batch): a
    counter child that several records increment is incremented once, by their sum
    (the same totals, fewer locked increments); histograms observe every record."""
    counts: dict[Any, int] = {}
    for record in records:
        _observe(record, counts)
    for child, amount in counts.items():
        child.inc(amount)


def _observe(record: UsageRecord, counts: dict[Any, int]) -> None:
    provider = record.provider or "unknown"
    model = _label(record.served_model or record.requested_model, "model")
    status_class = f"{record.status_code // 100}xx" if record.status_code else "none"
    child = _child(REQUESTS, provider, model, record.decision, status_class)
    counts[child] = counts.get(child, 0) + 1
    if record.usage_reported:
        app = _label(record.app_id, "app")
        for kind, value in (
            ("prompt", record.prompt_tokens),
            ("completion", record.completion_tokens),
            ("cached", record.cached_tokens),
            ("reasoning", record.reasoning_tokens),
        ):
            if value:
                child = _child(TOKENS, app, model, kind)
                counts[child] = counts.get(child, 0) + value
    if record.decision in ("allow", "incomplete") and record.latency_ms is not None:
        _child(REQUEST_DURATION, provider).observe(record.latency_ms / 1000)
    if record.ttft_ms is not None:
        _child(TIME_TO_FIRST_TOKEN, provider).observe(record.ttft_ms / 1000)


def observe_counter_store_error(operation: str) -> None:
    COUNTER_STORE_ERRORS.labels(operation).inc()


def observe_violation(policy_type: str, policy_id: str, outcome: str) -> None:
    _child(POLICY_DECISIONS, policy_type, policy_id, outcome).inc()


class _Recorder(Protocol):
    """What ``MeteredRecorder`` wraps (structurally ``extproc.services.UsageRecorder``)."""

    def record(self, record: UsageRecord) -> None: ...


class MeteredRecorder:
    """Observes each record's metrics, then hands it on. Never raises."""

    def __init__(self, inner: _Recorder) -> None:
        self._inner = inner

    def record(self, record: UsageRecord) -> None:
        try:
            observe_record(record)
        finally:
            self._inner.record(record)


ACCESS_LOG_SKIPPED = Counter(
    "access_log_lines_skipped",
    "Access log lines the usage reader could not turn into a record, by reason.",
    ["reason"],
    namespace=NAMESPACE,
)


def observe_skipped_line(reason: str) -> None:
    _child(ACCESS_LOG_SKIPPED, reason).inc()


UNSETTLED_RESERVATIONS = Counter(
    "unsettled_reservations",
    "Token reservations of admitted requests whose access log line came without the"
    " facts to settle them: given back (released: nothing went upstream) or, with no line"
    " at all, kept as charged (expired).",
    ["outcome"],
    namespace=NAMESPACE,
)


def observe_unsettled_reservation(outcome: str) -> None:
    _child(UNSETTLED_RESERVATIONS, outcome).inc()
