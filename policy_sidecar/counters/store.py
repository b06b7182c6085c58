"""The ``CounterStore`` protocol and helpers every implementation shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Protocol

from policy_sidecar.counters.values import (
    MAX_COUNTER_VALUE,
    Adjustment,
    CheckResult,
    CounterOp,
    Reservation,
)

__all__ = [
    "CounterStore",
    "SettlingMixin",
    "release_adjustments",
    "settle_adjustments",
]


class CounterStore(Protocol):
    """Counters for rate and token limits, shared by every request (and replica).

    Rules a caller relies on:

    - ``check_and_add`` checks every op of a request against its limit using the
      sliding-window rule (see ``windows``), then adds every amount, or adds nothing if
      any op would exceed its limit. It is atomic with respect to all other calls on the
      same store (one Redis script / one event-loop step). Keys must be distinct, and
      the keys of one call (``check_and_add`` or ``adjust``) must share one hash tag
      (``counter_key``'s braces): on a Redis Cluster one script runs in one slot, and
      the Redis store refuses a call across slots with ``ValueError``.
    - ``now`` is epoch seconds chosen by the caller; the store never reads a clock.
    - ``adjust`` adds a signed delta to the exact bucket a reservation went to, never
      checks limits and never takes a bucket below 0; buckets that no longer count are
      skipped. ``settle`` and ``release`` are built on it.
    - Any failure to reach the backing store raises ``CounterStoreUnavailable``; the
      store recovers by itself once the backend is back.
    """

    # True when ``check_and_add`` never suspends (in process): a cancellation cannot
    # fall between reserving and returning, so the enforcer need not shield the call.
    answers_at_once: bool

    async def check_and_add(self, ops: Sequence[CounterOp], now: float) -> CheckResult: ...

    async def adjust(self, adjustments: Sequence[Adjustment], now: float) -> None: ...

    async def settle(self, reservation: Reservation, actual: Mapping[str, int], now: float) -> None:
        """Correct each reserved key named in ``actual`` to that actual amount."""
        ...

    async def release(self, reservation: Reservation, now: float) -> None:
        """Give back everything the reservation added (request ended early)."""
        ...

    async def aclose(self) -> None: ...


def settle_adjustments(reservation: Reservation, actual: Mapping[str, int]) -> list[Adjustment]:
    """Deltas that turn each reserved amount named in ``actual`` into the actual amount."""
    unknown = set(actual) - {e.key for e in reservation.entries}
    if unknown:
        raise ValueError(f"keys not in the reservation: {sorted(unknown)}")
    # A request's actual amount is never negative (that would take back other requests'
    # share of the bucket) and never past the ceiling: a bogus report poisons nothing.
    bounded = {k: min(max(v, 0), MAX_COUNTER_VALUE) for k, v in actual.items()}
    return [
        Adjustment(e.key, e.window, e.bucket_start, bounded[e.key] - e.amount)
        for e in reservation.entries
        if e.key in bounded and bounded[e.key] != e.amount
    ]


def release_adjustments(reservation: Reservation) -> list[Adjustment]:
    return [
        Adjustment(e.key, e.window, e.bucket_start, -e.amount)
        for e in reservation.entries
        if e.amount
    ]


class SettlingMixin(ABC):
    """``settle`` and ``release`` in terms of ``adjust``."""

    @abstractmethod
    async def adjust(self, adjustments: Sequence[Adjustment], now: float) -> None: ...

    async def settle(self, reservation: Reservation, actual: Mapping[str, int], now: float) -> None:
        await self.adjust(settle_adjustments(reservation, actual), now)

    async def release(self, reservation: Reservation, now: float) -> None:
        await self.adjust(release_adjustments(reservation), now)
