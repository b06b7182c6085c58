"""The usage recorder's Prometheus metrics: every name in one place.

Metrics are built against a `CollectorRegistry` so tests can use their own; the
process-wide recorder uses `default_metrics()` (the global registry, created once).
No labels but ``flag`` (a fixed set, `FLAGS`): one recorder per process, so every
series is bounded by construction.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RecorderMetrics", "default_metrics"]

PREFIX = "policy_sidecar_usage_"
QUEUE_DEPTH = PREFIX + "queue_depth"
SPOOL_PENDING = PREFIX + "spool_pending_records"
BATCH_SIZE = PREFIX + "batch_size_records"
FLUSH_SECONDS = PREFIX + "flush_duration_seconds"
WRITTEN = PREFIX + "records_written"
RETRIED = PREFIX + "records_retried"
SPOOLED = PREFIX + "records_spooled"
REPLAYED = PREFIX + "records_replayed"
DROPPED = PREFIX + "records_dropped"
REJECTED = PREFIX + "records_rejected"
FLAGGED = PREFIX + "records_flagged"

#: Values of FLAGGED's ``flag`` label (usage/bounds.py, usage/clamp.py); anything else
#: (a flag from a newer version, read back from the spool) counts as "other".
FLAGS = frozenset({
    "request_id_replaced", "text_truncated", "tokens_out_of_range", "value_out_of_range",
    "usage_negative", "prompt_capped", "completion_capped", "total_capped",
})  # fmt: skip

_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RecorderMetrics:
    """Counters count records (not batches); the histograms observe each sink write."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.queue_depth = Gauge(
            QUEUE_DEPTH, "Usage records waiting in memory to be written.", registry=registry
        )
        self.spool_pending = Gauge(
            SPOOL_PENDING, "Usage records in the local spool not yet replayed.", registry=registry
        )
        self.batch_size = Histogram(
            BATCH_SIZE,
            "Records per sink write (queue batches and spool replays).",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.flush_seconds = Histogram(
            FLUSH_SECONDS,
            "Duration of one successful sink write.",
            buckets=_FLUSH_BUCKETS,
            registry=registry,
        )
        self.written = Counter(WRITTEN, "Usage records stored by the sink.", registry=registry)
        self.retried = Counter(
            RETRIED, "Usage records in sink writes that failed and were retried.", registry=registry
        )
        self.spooled = Counter(
            SPOOLED, "Usage records written to the local spool.", registry=registry
        )
        self.replayed = Counter(
            REPLAYED, "Usage records replayed from the spool into the sink.", registry=registry
        )
        self.dropped = Counter(
            DROPPED,
            "Usage records lost: the spool disk failed or a spool line was unreadable.",
            registry=registry,
        )

        self.rejected = Counter(
            REJECTED,
            "Usage records the sink refused for good (quarantined), kept in the spool's"
            " rejected.jsonl with the reason.",
            registry=registry,
        )
        self.flagged = Counter(
            FLAGGED,
            "Usage records bounded before queueing (flag: what was replaced, truncated or"
            " clamped; a record may count under several flags).",
            ["flag"],
            registry=registry,
        )

    def count_flags(self, flags: tuple[str, ...]) -> None:
        for flag in flags:
            self.flagged.labels(flag if flag in FLAGS else "other").inc()

    def track(
        self, *, queue_depth: Callable[[], float], spool_pending: Callable[[], float]
    ) -> None:
        """Read the gauges from the recorder at scrape time (nothing on the request path)."""
        self.queue_depth.set_function(queue_depth)
        self.spool_pending.set_function(spool_pending)

    def value(self, name: str) -> float:
        """A sample's current value (``…_total`` for counters); 0.0 when absent. For tests
        and the benchmark."""
        return self.registry.get_sample_value(name) or 0.0


_default: RecorderMetrics | None = None


def default_metrics() -> RecorderMetrics:
    """The metrics on the global registry, created on first use."""
    global _default
    if _default is None:
        _default = RecorderMetrics(REGISTRY)
    return _default
