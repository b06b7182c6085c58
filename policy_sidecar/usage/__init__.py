"""Usage records, the asynchronous recorder and the sinks that store them."""

from __future__ import annotations

from policy_sidecar.usage.record import Decision, UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import JsonlFileSink, UsageSink

__all__ = ["BatchingRecorder", "Decision", "JsonlFileSink", "UsageRecord", "UsageSink"]
