"""`plan_bucket` and `build_result` compute each bucket's bounds once (issue 13): they
must give exactly what the definitions (`bucket_bounds`, `ttl_ms`, `_reset_at`,
`_retry_at`) give, for every window and instant."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from policy_sidecar.counters.values import CounterOp, Window, WindowUnit
from policy_sidecar.counters.windows import (
    _reset_at,
    _retry_at,
    bucket_bounds,
    bucket_key,
    build_result,
    plan_bucket,
    ttl_ms,
    validate_ops,
    weighted,
)

WINDOWS = [
    Window(WindowUnit.SECOND),
    Window(WindowUnit.SECOND, 7),
    Window(WindowUnit.MINUTE),
    Window(WindowUnit.MINUTE, 5),
    Window(WindowUnit.HOUR),
    Window(WindowUnit.HOUR, 3),
    Window(WindowUnit.DAY),
    Window(WindowUnit.DAY, 30),
    Window(WindowUnit.MONTH),
]


def instants(seed: int) -> list[float]:
    rng = random.Random(seed)
    month_edge = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    out = [0.0, 59.999, 60.0, 1.7e9, month_edge, month_edge - 0.001, month_edge - 1]
    out += [rng.uniform(1.6e9, 1.9e9) for _ in range(200)]
    out += [float(rng.randrange(1_600_000_000, 1_900_000_000)) for _ in range(50)]
    return out


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: w.name)
def test_plan_is_the_definitions(window: Window) -> None:
    op = CounterOp("ps:{org:o}:app:a:p", 10, window, 1)
    for now in instants(1):
        start, end = bucket_bounds(window, now)
        if window.is_calendar_month:
            prev_start, weight = bucket_bounds(window, start - 1)[0], 0.0
        else:
            prev_start = start - window.fixed_seconds
            weight = max(0.0, min(1.0, 1.0 - (now - start) / window.fixed_seconds))
        plan = plan_bucket(op, now)
        assert plan.cur_key == bucket_key(op.key, window, start)
        assert plan.prev_key == bucket_key(op.key, window, prev_start)
        assert plan.bucket_start == start
        assert type(plan.bucket_start) is int
        assert plan.bucket_end == end
        assert plan.prev_weight == weight
        assert plan.ttl_ms == ttl_ms(window, start, now)


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: w.name)
@pytest.mark.parametrize("admitted", [True, False])
def test_result_is_the_definitions(window: Window, admitted: bool) -> None:
    rng = random.Random(2)
    for now in instants(3)[:60]:
        ops = [
            CounterOp(f"k{i}", rng.choice([0, 1, 5, 100, 10**6]), window, rng.choice([0, 1, 7, 50]))
            for i in range(4)
        ]
        plans = [plan_bucket(op, now) for op in ops]
        observed = [(rng.choice([0, 0, 3, 90, 10**6]), rng.choice([0, 2, 60, 10**6])) for _ in ops]
        denied = None if admitted else rng.randrange(len(ops))
        result = build_result(ops, plans, observed, denied, now)
        assert result.admitted is admitted
        assert result.denied_index == denied
        for op, plan, (prev, cur), state in zip(ops, plans, observed, result.states, strict=True):
            cur_now = cur + op.amount if admitted else cur
            used = cur_now + weighted(prev, plan.prev_weight)
            exceeds = cur + weighted(prev, plan.prev_weight) + op.amount > op.limit
            assert state.used == used
            assert state.remaining == max(0, op.limit - used)
            assert state.bucket_start == plan.bucket_start
            assert state.reset_at == _reset_at(op, plan.bucket_start, prev, cur_now, now)
            expected_retry = (
                _retry_at(op, plan.bucket_start, prev, cur) if not admitted and exceeds else None
            )
            assert state.retry_at == expected_retry
        if admitted:
            assert result.reservation is not None
            assert [(e.key, e.bucket_start, e.amount) for e in result.reservation.entries] == [
                (op.key, plan.bucket_start, op.amount) for op, plan in zip(ops, plans, strict=True)
            ]
        else:
            assert result.reservation is None


def test_duplicate_keys_in_one_request_are_refused() -> None:
    w = Window(WindowUnit.MINUTE)
    validate_ops([])
    validate_ops([CounterOp("a", 1, w, 1)])
    validate_ops([CounterOp("a", 1, w, 1), CounterOp("b", 1, w, 1)])
    with pytest.raises(
        ValueError, match=r"duplicate counter keys in one request: \['a', 'b', 'a'\]"
    ):
        validate_ops([CounterOp("a", 1, w, 1), CounterOp("b", 1, w, 1), CounterOp("a", 2, w, 0)])
