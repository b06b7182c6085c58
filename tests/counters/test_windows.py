"""Pure window arithmetic and key building."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from policy_sidecar.counters.values import CounterOp, Window, WindowUnit, counter_key
from policy_sidecar.counters.windows import (
    bucket_bounds,
    current_bucket_state,
    plan_bucket,
    weighted,
)


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


@pytest.fixture
def far_time_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's local time 14 hours ahead of UTC (TZ read by time.tzset)."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_time_zone")
def test_calendar_months_are_utc_whatever_the_host_time_zone() -> None:
    # 20:00 UTC on the 31st is already the 1st of the next month in Kiritimati
    assert bucket_bounds(Window(WindowUnit.MONTH), ts(2026, 1, 31, 20)) == (
        ts(2026, 1, 1),
        ts(2026, 2, 1),
    )


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
        # ids are opaque: every reserved character is encoded, "/" included
        (("app", "a/b c", "m/x"), "ps:{app:a%2Fb%20c}:m%2Fx"),
    ],
)
def test_counter_key(args: tuple[str, ...], expected: str) -> None:
    assert counter_key(*args) == expected


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Window(WindowUnit.MINUTE, 0), "window count must be >= 1, got 0"),
        (lambda: Window(WindowUnit.MONTH, 2), "calendar month windows support count=1 only"),
        (lambda: Window(WindowUnit.MONTH).seconds, "a calendar month has no fixed length"),
        (
            lambda: CounterOp("k", -1, Window(WindowUnit.MINUTE), 1),
            "limit and amount must be >= 0 for 'k'",
        ),
        (
            lambda: CounterOp("k", 1, Window(WindowUnit.MINUTE), -1),
            "limit and amount must be >= 0 for 'k'",
        ),
        (lambda: counter_key("app", ""), "counter key parts must be non-empty"),
    ],
)
def test_invalid_values_rejected(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()  # type: ignore[operator]


def test_a_limit_of_zero_is_a_counter_that_only_reads() -> None:
    op = CounterOp("k", 0, Window(WindowUnit.MINUTE), 0)
    assert (op.limit, op.amount) == (0, 0)


# The admin's dry run: a counter as if all of ``used`` were in the current bucket.


def test_dry_run_state_under_the_limit() -> None:
    state = current_bucket_state(
        "k", Window(WindowUnit.MINUTE), limit=100, used=30, amount=1, now=1000.0
    )
    assert (state.key, state.limit, state.window) == ("k", 100, Window(WindowUnit.MINUTE))
    assert (state.bucket_start, state.used, state.remaining) == (960, 30, 70)
    # the current bucket counts until the end of the next one
    assert state.reset_at == 1080.0
    assert state.retry_at is None


def test_dry_run_state_of_an_unused_counter_resets_now() -> None:
    state = current_bucket_state(
        "k", Window(WindowUnit.MINUTE), limit=100, used=0, amount=1, now=1000.5
    )
    assert (state.used, state.remaining, state.reset_at, state.retry_at) == (0, 100, 1000.5, None)


def test_dry_run_state_exactly_at_the_limit_has_no_retry() -> None:
    state = current_bucket_state(
        "k", Window(WindowUnit.MINUTE), limit=100, used=99, amount=1, now=1000.0
    )
    assert (state.remaining, state.retry_at) == (1, None)


def test_dry_run_state_over_the_limit_retries_when_the_bucket_has_decayed() -> None:
    state = current_bucket_state(
        "k", Window(WindowUnit.MINUTE), limit=100, used=120, amount=20, now=1000.0
    )
    assert state.remaining == 0
    # next bucket starts at 1020; 120 * (1 - f) <= 80 once f >= 1/3, i.e. at 1040
    assert state.retry_at == pytest.approx(1040.001, abs=0.0015)
    assert state.retry_at is not None and state.retry_at > 1040.0


def test_dry_run_state_amount_over_the_limit_never_retries() -> None:
    state = current_bucket_state(
        "k", Window(WindowUnit.MINUTE), limit=10, used=5, amount=11, now=1000.0
    )
    assert state.retry_at is None


def test_dry_run_state_of_an_unused_month_resets_now() -> None:
    now = ts(2026, 2, 10, 12)
    state = current_bucket_state("k", Window(WindowUnit.MONTH), limit=10, used=0, amount=1, now=now)
    assert (state.reset_at, state.retry_at) == (now, None)


def test_dry_run_state_of_a_month_resets_on_the_first() -> None:
    state = current_bucket_state(
        "k", Window(WindowUnit.MONTH), limit=10, used=10, amount=1, now=ts(2026, 2, 10, 12)
    )
    assert state.bucket_start == ts(2026, 2, 1)
    assert state.reset_at == ts(2026, 3, 1)
    assert state.retry_at == ts(2026, 3, 1)


@pytest.mark.parametrize(
    ("window", "name", "seconds"),
    [
        (Window(WindowUnit.SECOND), "1s", 1),
        (Window(WindowUnit.MINUTE, 5), "300s", 300),
        (Window(WindowUnit.HOUR), "3600s", 3600),
        (Window(WindowUnit.DAY, 7), "604800s", 604800),
        (Window(WindowUnit.MONTH), "month", 0),
    ],
)
def test_window_values_computed_once_match_the_unit(
    window: Window, name: str, seconds: int
) -> None:
    """``name``, ``is_calendar_month`` and the length are set at construction (the counters
    read them several times an op); they take no part in equality, hash or repr, and a
    copy (``replace``, pickle) computes them again."""
    import dataclasses
    import pickle

    assert window.name == name
    assert window.is_calendar_month is (window.unit is WindowUnit.MONTH)
    assert window.fixed_seconds == seconds
    if seconds:
        assert window.seconds == seconds
    else:
        with pytest.raises(ValueError, match="no fixed length"):
            _ = window.seconds
    twin = Window(window.unit, window.count)
    assert twin == window and hash(twin) == hash(window)
    assert repr(window) == f"Window(unit={window.unit!r}, count={window.count})"
    assert pickle.loads(pickle.dumps(window)).name == name
    if not window.is_calendar_month:
        assert dataclasses.replace(window, count=2).name == f"{2 * seconds // window.count}s"
