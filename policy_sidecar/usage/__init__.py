"""Usage records, the asynchronous recorder, its spool and the sinks that store them."""

from __future__ import annotations

from policy_sidecar.usage.backoff import Backoff
from policy_sidecar.usage.cost import Pricing
from policy_sidecar.usage.metrics import RecorderMetrics, default_metrics
from policy_sidecar.usage.postgres_sink import PostgresUsageSink
from policy_sidecar.usage.record import Decision, UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import JsonlFileSink, UsageSink
from policy_sidecar.usage.spool import Spool, SpoolLockedError

__all__ = [
    "Backoff",
    "BatchingRecorder",
    "Decision",
    "JsonlFileSink",
    "PostgresUsageSink",
    "Pricing",
    "RecorderMetrics",
    "Spool",
    "SpoolLockedError",
    "UsageRecord",
    "UsageSink",
    "default_metrics",
]
