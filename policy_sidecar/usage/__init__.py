"""Usage records and the sinks that store them."""

from __future__ import annotations

from policy_sidecar.usage.record import Decision, UsageRecord

__all__ = ["Decision", "UsageRecord"]
