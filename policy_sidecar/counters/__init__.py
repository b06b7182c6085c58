"""Counter stores for rate limits and token limits (see docs/counters.md)."""

from __future__ import annotations

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import Clock, CounterStore, SystemClock
from policy_sidecar.counters.types import (
    Adjustment,
    CheckResult,
    CounterOp,
    CounterState,
    CounterStoreUnavailable,
    Reservation,
    ReservedAmount,
    Window,
    WindowUnit,
    counter_key,
)

__all__ = [
    "Adjustment",
    "CheckResult",
    "Clock",
    "CounterOp",
    "CounterState",
    "CounterStore",
    "CounterStoreUnavailable",
    "InMemoryCounterStore",
    "RedisCounterStore",
    "Reservation",
    "ReservedAmount",
    "SystemClock",
    "Window",
    "WindowUnit",
    "counter_key",
]
