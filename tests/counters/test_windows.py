"""Pure window arithmetic and key building."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policy_sidecar.counters.values import CounterOp, Window, WindowUnit, counter_key
from policy_sidecar.counters.windows import bucket_bounds, plan_bucket, weighted


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("now", "start", "end"),
    [
        (ts(2026, 1, 31, 23, 59, 59), ts(2026, 1, 1), ts(2026, 2, 1)),
        (ts(2026, 2, 1), ts(2026, 2, 1), ts(2026, 3, 1)),
        (ts(2028, 2, 29, 12), ts(2028, 2, 1), ts(2028, 3, 1)),
        (ts(2026, 12, 31, 23, 59, 59), ts(2026, 12, 1), ts(2027, 1, 1)),
    ],
)
def test_calendar_month_bounds(now: float, start: float, end: float) -> None:
    assert bucket_bounds(Window(WindowUnit.MONTH), now) == (start, end)


@pytest.mark.parametrize(
    ("window", "now", "start"),
    [
        (Window(WindowUnit.SECOND), 100.7, 100),
        (Window(WindowUnit.MINUTE, 5), 1000.0, 900),
        (Window(WindowUnit.HOUR), 7199.9, 3600),
        (Window(WindowUnit.DAY), ts(2026, 3, 4, 5), ts(2026, 3, 4)),
    ],
)
def test_sliding_bucket_start(window: Window, now: float, start: float) -> None:
    assert bucket_bounds(window, now)[0] == start


@pytest.mark.parametrize(
    ("now", "weight"), [(120.0, 1.0), (135.0, 0.75), (150.0, 0.5), (179.999, 0.001 / 60)]
)
def test_previous_bucket_weight(now: float, weight: float) -> None:
    plan = plan_bucket(CounterOp("k", 10, Window(WindowUnit.MINUTE), 1), now)
    assert plan.prev_weight == pytest.approx(weight)
    assert plan.cur_key == "k:60s:120"
    assert plan.prev_key == "k:60s:60"


def test_month_plan_ignores_previous_month() -> None:
    plan = plan_bucket(CounterOp("k", 10, Window(WindowUnit.MONTH), 1), ts(2026, 3, 1, 0, 0, 1))
    assert plan.prev_weight == 0.0
    assert plan.prev_key == f"k:month:{int(ts(2026, 2, 1))}"


@pytest.mark.parametrize(("prev", "weight", "carried"), [(0, 0.5, 0), (10, 0.0, 0), (10, 0.55, 6)])
def test_weighted_rounds_up(prev: int, weight: float, carried: int) -> None:
    assert weighted(prev, weight) == carried


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("app", "42", "rl", "p7"), "ps:{app:42}:rl:p7"),
        (("app", "a:b}{", "tok"), "ps:{app:a%3Ab%7D%7B}:tok"),
        (("org", "o1"), "ps:{org:o1}"),
    ],
)
def test_counter_key(args: tuple[str, ...], expected: str) -> None:
    assert counter_key(*args) == expected


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Window(WindowUnit.MINUTE, 0), "count must be >= 1"),
        (lambda: Window(WindowUnit.MONTH, 2), "count=1"),
        (lambda: Window(WindowUnit.MONTH).seconds, "no fixed length"),
        (lambda: CounterOp("k", -1, Window(WindowUnit.MINUTE), 1), ">= 0"),
        (lambda: counter_key("app", ""), "non-empty"),
    ],
)
def test_invalid_values_rejected(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
