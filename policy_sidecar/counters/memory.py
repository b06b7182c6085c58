"""In-process counter store for standalone mode (one process, one event loop)."""

from __future__ import annotations

from collections.abc import Sequence

from policy_sidecar.counters.store import SettlingMixin
from policy_sidecar.counters.values import MAX_COUNTER_VALUE, Adjustment, CheckResult, CounterOp
from policy_sidecar.counters.windows import (
    bucket_key,
    build_result,
    plan_bucket,
    ttl_ms,
    validate_ops,
    weighted,
)

__all__ = ["InMemoryCounterStore"]

_SWEEP_EVERY = 1024


class InMemoryCounterStore(SettlingMixin):
    """Same semantics as ``RedisCounterStore``, kept in a dict.

    Not shared between processes: with several workers each has its own counters, which
    multiplies every limit. Atomic because no method awaits between reading and writing.
    Expiry follows the ``now`` passed in, not the wall clock.
    """

    answers_at_once = True  # ``check_and_add`` never suspends (`CounterStore`)

    def __init__(self) -> None:
        self._values: dict[str, tuple[int, float]] = {}  # key -> (value, expires_at)
        self._calls = 0

    def _get(self, key: str, now: float) -> int:
        entry = self._values.get(key)
        if entry is None:
            return 0
        if entry[1] <= now:
            del self._values[key]
            return 0
        return entry[0]

    def _maybe_sweep(self, now: float) -> None:
        self._calls += 1
        if self._calls % _SWEEP_EVERY == 0:
            self._values = {k: v for k, v in self._values.items() if v[1] > now}

    async def check_and_add(self, ops: Sequence[CounterOp], now: float) -> CheckResult:
        validate_ops(ops)
        self._maybe_sweep(now)
        plans = [plan_bucket(op, now) for op in ops]
        observed: list[tuple[int, int]] = []
        denied: int | None = None
        get = self._get
        for i, plan in enumerate(plans):
            cur = get(plan.cur_key, now)
            prev = get(plan.prev_key, now) if plan.prev_weight else 0
            observed.append((prev, cur))
            if denied is None:
                op = ops[i]
                if cur + weighted(prev, plan.prev_weight) + op.amount > op.limit:
                    denied = i
        if denied is None:
            values = self._values
            for op, plan, (_, cur) in zip(ops, plans, observed, strict=True):
                if op.amount:
                    value = min(cur + op.amount, MAX_COUNTER_VALUE)
                    values[plan.cur_key] = (value, now + plan.ttl_ms / 1000)
        return build_result(ops, plans, observed, denied, now)

    async def adjust(self, adjustments: Sequence[Adjustment], now: float) -> None:
        for adj in adjustments:
            ttl = ttl_ms(adj.window, adj.bucket_start, now)
            if ttl <= 0 or adj.delta == 0:
                continue
            key = bucket_key(adj.key, adj.window, adj.bucket_start)
            current = self._get(key, now)
            if current or adj.delta > 0:
                value = min(max(0, current + adj.delta), MAX_COUNTER_VALUE)
                self._values[key] = (value, now + ttl / 1000)

    def bucket_count(self) -> int:
        """Buckets held, expired ones not yet swept included (tests and debugging). Not
        ``__len__``: an empty store must stay truthy (``store or default`` checks)."""
        return len(self._values)

    def ttl(self, key: str, now: float) -> float | None:
        """Seconds until a bucket key expires (tests and debugging)."""
        entry = self._values.get(key)
        return None if entry is None or entry[1] <= now else entry[1] - now

    async def aclose(self) -> None:
        self._values.clear()
