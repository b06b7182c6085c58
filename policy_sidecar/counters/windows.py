"""Pure window arithmetic shared by every store: buckets, weights, expiries, results.

Counting rule for fixed-length (sliding) windows of length W, bucket start
``b = floor(now / W) * W``, elapsed fraction ``f = (now - b) / W``::

    effective = current + ceil(previous * (1 - f))
    admit      iff effective + amount <= limit     (for every op of the request)

The weight is computed here, once, and handed to the store (the Redis script gets it
as a decimal string that round-trips exactly), so both stores make the same decision
for the same inputs. Calendar months are fixed buckets: effective = current.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from policy_sidecar.counters.values import (
    CheckResult,
    CounterOp,
    CounterState,
    Reservation,
    ReservedAmount,
    Window,
)

__all__ = [
    "BucketPlan",
    "bucket_bounds",
    "bucket_key",
    "build_result",
    "current_bucket_state",
    "plan_bucket",
    "ttl_ms",
    "validate_ops",
    "weighted",
]

# Keys outlive the instant they stop mattering by this much, so a late settle or a
# slightly skewed replica clock still finds them.
_SLACK_S = 1
_MONTH_SLACK_S = 86400


@dataclass(slots=True)
class BucketPlan:
    """Where one op reads and writes at a given time.

    Not frozen, unlike the values the stores return: three are built per request and
    none outlives the store call, and a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__`` (about 2.5 times the construction time). Never changed.
    """

    cur_key: str
    prev_key: str
    bucket_start: int
    prev_weight: float  # 0.0 for calendar months: the previous month never counts
    ttl_ms: int
    # End of the current bucket: the reset and retry times need it (computed once here,
    # not again per use: `bucket_bounds` was called three times per op).
    bucket_end: int


def bucket_bounds(window: Window, start_or_now: float) -> tuple[int, int]:
    """Return ``(start, end)`` of the bucket containing the given instant."""
    if window.is_calendar_month:
        t = datetime.fromtimestamp(start_or_now, UTC)
        start = datetime(t.year, t.month, 1, tzinfo=UTC)
        end = datetime(t.year + t.month // 12, t.month % 12 + 1, 1, tzinfo=UTC)
        return int(start.timestamp()), int(end.timestamp())
    length = window.fixed_seconds
    start_s = math.floor(start_or_now / length) * length
    return start_s, start_s + length


def bucket_key(key: str, window: Window, bucket_start: int) -> str:
    """Storage key of one bucket: the counter key, the window name and the bucket start."""
    return f"{key}:{window.name}:{bucket_start}"


def ttl_ms(window: Window, bucket_start: int, now: float) -> int:
    """Expiry for a bucket written at ``now``; <= 0 once the bucket no longer counts.

    A sliding bucket counts until the end of the next bucket (about two windows);
    a month bucket until the month ends, plus a day of slack.
    """
    _, end = bucket_bounds(window, bucket_start)
    if window.is_calendar_month:
        last_useful = end
        slack = _MONTH_SLACK_S
    else:
        last_useful = end + window.fixed_seconds
        slack = _SLACK_S
    if last_useful <= now:
        return 0
    return math.ceil((last_useful + slack - now) * 1000)


def plan_bucket(op: CounterOp, now: float) -> BucketPlan:
    window = op.window
    if window.is_calendar_month:
        start, end = bucket_bounds(window, now)
        return BucketPlan(
            cur_key=bucket_key(op.key, window, start),
            prev_key=bucket_key(op.key, window, bucket_bounds(window, start - 1)[0]),
            bucket_start=start,
            prev_weight=0.0,
            ttl_ms=ttl_ms(window, start, now),
            bucket_end=end,
        )
    # The fixed-length case of `bucket_bounds` and `ttl_ms` inlined, same arithmetic.
    length = window.fixed_seconds
    start = math.floor(now / length) * length
    end = start + length
    last_useful = end + length
    name = window.name
    return BucketPlan(
        cur_key=f"{op.key}:{name}:{start}",
        prev_key=f"{op.key}:{name}:{start - length}",
        bucket_start=start,
        prev_weight=max(0.0, min(1.0, 1.0 - (now - start) / length)),
        ttl_ms=0 if last_useful <= now else math.ceil((last_useful + _SLACK_S - now) * 1000),
        bucket_end=end,
    )


def weighted(prev: int, weight: float) -> int:
    """The previous bucket's contribution; must match the Lua script exactly."""
    return math.ceil(prev * weight) if prev and weight else 0


def validate_ops(ops: Sequence[CounterOp]) -> None:
    if len(ops) > 1 and len({op.key for op in ops}) != len(ops):
        raise ValueError(f"duplicate counter keys in one request: {[op.key for op in ops]}")


def _reset_at(op: CounterOp, start: int, prev: int, cur: int, now: float) -> float:
    return _reset_at_end(op.window, bucket_bounds(op.window, start)[1], prev, cur, now)


def _reset_at_end(window: Window, end: int, prev: int, cur: int, now: float) -> float:
    if window.is_calendar_month:
        return float(end) if cur else now
    if cur:
        return float(end + window.fixed_seconds)
    return float(end) if prev else now


def _retry_at(op: CounterOp, start: int, prev: int, cur: int) -> float | None:
    return _retry_at_end(op, start, bucket_bounds(op.window, start)[1], prev, cur)


def _retry_at_end(op: CounterOp, start: int, end: int, prev: int, cur: int) -> float | None:
    if op.amount > op.limit:
        return None
    if op.window.is_calendar_month:
        return float(end)
    length = op.window.fixed_seconds
    room = op.limit - cur - op.amount
    if room >= 0 and prev:
        # the previous bucket decays linearly; find when ceil(prev * w) <= room
        return _next_ms(start + length * (1.0 - room / prev))
    if not cur:
        return float(end)
    # in the next bucket today's current one is the previous one
    return _next_ms(end + length * (1.0 - (op.limit - op.amount) / cur))


def _next_ms(t: float) -> float:
    """Round up to the next millisecond but one: float noise (epoch seconds carry ~2e-7 s
    of it) must not leave the result a hair before the counter actually has room."""
    return math.ceil(t * 1000) / 1000 + 0.001


def build_result(
    ops: Sequence[CounterOp],
    plans: Sequence[BucketPlan],
    observed: Sequence[tuple[int, int]],
    denied_index: int | None,
    now: float,
) -> CheckResult:
    """Turn raw ``(previous, current-before-add)`` values into a ``CheckResult``."""
    admitted = denied_index is None
    states: list[CounterState] = []
    for op, plan, (prev, cur) in zip(ops, plans, observed, strict=True):
        limit = op.limit
        start = plan.bucket_start
        end = plan.bucket_end
        from_prev = math.ceil(prev * plan.prev_weight) if prev and plan.prev_weight else 0
        cur_now = cur + op.amount if admitted else cur
        used = cur_now + from_prev
        retry = None
        if not admitted and cur + from_prev + op.amount > limit:
            retry = _retry_at_end(op, start, end, prev, cur)
        states.append(
            CounterState(
                key=op.key,
                limit=limit,
                window=op.window,
                bucket_start=start,
                used=used,
                remaining=max(0, limit - used),
                reset_at=_reset_at_end(op.window, end, prev, cur_now, now),
                retry_at=retry,
            )
        )
    reservation = None
    if admitted:
        reservation = Reservation(
            tuple(
                ReservedAmount(op.key, op.window, plan.bucket_start, op.amount)
                for op, plan in zip(ops, plans, strict=True)
            )
        )
    return CheckResult(admitted, tuple(states), denied_index, reservation)


def current_bucket_state(
    key: str, window: Window, *, limit: int, used: int, amount: int, now: float
) -> CounterState:
    """The state a counter would report if all of ``used`` had been counted in the
    current bucket (the admin's dry run, which reads no live counters): the same
    bucket bounds, reset and retry times as a real check, so a calendar month resets at
    the start of the next month, not a fixed length from now."""
    op = CounterOp(key=key, limit=limit, window=window, amount=amount)
    start, _ = bucket_bounds(window, now)
    return CounterState(
        key=key,
        limit=limit,
        window=window,
        bucket_start=start,
        used=used,
        remaining=max(limit - used, 0),
        reset_at=_reset_at(op, start, 0, used, now),
        retry_at=_retry_at(op, start, 0, used) if used + amount > limit else None,
    )
