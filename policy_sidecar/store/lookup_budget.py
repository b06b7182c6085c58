"""A token bucket bounding how often a process may ask the store about keys it has
never seen (a flood of random keys must not reach Postgres at full rate)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["LookupBudget"]


class LookupBudget:
    """`rate` lookups a second on average, bursts up to `burst`. One per process (per
    worker); not thread-safe (one event loop)."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        """Spend one lookup if one is left; False when the budget is used up."""
        now = self._clock()
        elapsed = max(0.0, now - self._at)  # a wall clock may step back
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
