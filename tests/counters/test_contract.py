"""Contract tests every CounterStore passes (in-memory and Redis)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from counter_helpers import KeyFactory, bucket_ttl

from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import (
    MAX_COUNTER_VALUE,
    Adjustment,
    CounterOp,
    Window,
    WindowUnit,
)
from policy_sidecar.counters.windows import bucket_key

MINUTE = Window(WindowUnit.MINUTE)
MONTH = Window(WindowUnit.MONTH)
T0 = datetime(2026, 1, 15, tzinfo=UTC).timestamp()  # a minute (and day) boundary


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


async def used(store: CounterStore, op: CounterOp, now: float) -> int:
    """Read a counter without changing it (amount 0)."""
    probe = CounterOp(op.key, op.limit, op.window, 0)
    return (await store.check_and_add([probe], now)).states[0].used


async def test_admits_until_limit_then_denies(store: CounterStore, key: KeyFactory) -> None:
    op = CounterOp(key("rl"), limit=3, window=MINUTE, amount=1)
    results = [await store.check_and_add([op], T0 + i) for i in range(4)]
    assert [r.admitted for r in results] == [True, True, True, False]
    assert [r.states[0].used for r in results] == [1, 2, 3, 3]
    assert [r.states[0].remaining for r in results] == [2, 1, 0, 0]
    assert results[3].denied_index == 0
    assert results[3].reservation is None
    assert results[0].states[0].reset_at == T0 + 120  # the bucket stops counting then


@pytest.mark.parametrize(
    ("limits", "amounts", "denied_index"),
    [
        ((10, 3), (5, 5), 1),
        ((3, 10), (5, 5), 0),
        ((10, 10, 4), (5, 5, 5), 2),
        ((10, 10), (10, 10), None),
    ],
)
async def test_all_or_nothing(
    store: CounterStore,
    key: KeyFactory,
    limits: tuple[int, ...],
    amounts: tuple[int, ...],
    denied_index: int | None,
) -> None:
    ops = [
        CounterOp(key(f"c{i}"), limit=lim, window=MINUTE, amount=amt)
        for i, (lim, amt) in enumerate(zip(limits, amounts, strict=True))
    ]
    result = await store.check_and_add(ops, T0)
    assert result.denied_index == denied_index
    assert result.admitted is (denied_index is None)
    expected = list(amounts) if denied_index is None else [0] * len(ops)
    assert [await used(store, op, T0 + 1) for op in ops] == expected
    if denied_index is not None:
        assert result.denied is not None
        assert result.denied.key == ops[denied_index].key


async def test_duplicate_keys_rejected(store: CounterStore, key: KeyFactory) -> None:
    op = CounterOp(key("rl"), limit=3, window=MINUTE, amount=1)
    with pytest.raises(ValueError, match="duplicate"):
        await store.check_and_add([op, op], T0)


async def test_empty_request_is_admitted(store: CounterStore) -> None:
    result = await store.check_and_add([], T0)
    assert result.admitted
    assert result.states == ()


async def test_burst_at_boundary_cannot_double(store: CounterStore, key: KeyFactory) -> None:
    limit = 100
    full = CounterOp(key("tok"), limit=limit, window=MINUTE, amount=limit)
    assert (await store.check_and_add([full], T0 + 59.9)).admitted
    # just past the boundary the previous bucket still weighs ~100%
    late = await store.check_and_add([full], T0 + 60.1)
    assert not late.admitted
    assert late.states[0].retry_at == pytest.approx(T0 + 120)
    one = CounterOp(full.key, limit, MINUTE, 1)
    assert not (await store.check_and_add([one], T0 + 60.1)).admitted
    # half way into the bucket half of the previous bucket has decayed
    half = CounterOp(full.key, limit, MINUTE, 50)
    assert (await store.check_and_add([half], T0 + 90)).admitted
    assert not (await store.check_and_add([one], T0 + 90)).admitted
    # two windows after the burst nothing of it is left
    assert await used(store, full, T0 + 180) == 0


@pytest.mark.parametrize(
    ("offset", "expected_used"),
    [(60.0, 80), (75.0, 60), (90.0, 40), (105.0, 20), (119.999, 1), (120.0, 0)],
)
async def test_previous_bucket_decays_linearly(
    store: CounterStore, key: KeyFactory, offset: float, expected_used: int
) -> None:
    op = CounterOp(key("tok"), limit=100, window=MINUTE, amount=80)
    assert (await store.check_and_add([op], T0 + 10)).admitted
    assert await used(store, op, T0 + offset) == expected_used


async def test_denied_retry_at_within_current_bucket(store: CounterStore, key: KeyFactory) -> None:
    fill = CounterOp(key("tok"), limit=100, window=MINUTE, amount=100)
    await store.check_and_add([fill], T0 + 30)
    ask = CounterOp(fill.key, 100, MINUTE, 40)
    denied = await store.check_and_add([ask], T0 + 60)
    assert denied.states[0].retry_at == pytest.approx(T0 + 60 + 60 * 0.4)
    assert (await store.check_and_add([ask], denied.states[0].retry_at or 0)).admitted


async def test_amount_over_limit_never_retries(store: CounterStore, key: KeyFactory) -> None:
    op = CounterOp(key("tok"), limit=10, window=MINUTE, amount=11)
    result = await store.check_and_add([op], T0)
    assert not result.admitted
    assert result.states[0].retry_at is None


async def test_calendar_month_resets_on_the_first(store: CounterStore, key: KeyFactory) -> None:
    budget = CounterOp(key("usd"), limit=1_000_000, window=MONTH, amount=1_000_000)
    jan31 = ts(2026, 1, 31, 23, 59, 59)
    feb1 = ts(2026, 2, 1)
    assert (await store.check_and_add([budget], jan31)).admitted
    one = CounterOp(budget.key, budget.limit, MONTH, 1)
    denied = await store.check_and_add([one], jan31 + 0.5)
    assert not denied.admitted
    assert denied.states[0].retry_at == feb1
    assert denied.states[0].reset_at == feb1
    fresh = await store.check_and_add([budget], feb1)
    assert fresh.admitted
    assert fresh.states[0].bucket_start == feb1
    assert fresh.states[0].reset_at == ts(2026, 3, 1)


async def test_settle_down_and_up(store: CounterStore, key: KeyFactory) -> None:
    reserve = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=500)
    first = await store.check_and_add([reserve], T0)
    assert first.reservation is not None
    await store.settle(first.reservation, {reserve.key: 200}, T0 + 1)
    assert await used(store, reserve, T0 + 2) == 200
    second = await store.check_and_add([reserve], T0 + 3)
    assert second.reservation is not None
    await store.settle(second.reservation, {reserve.key: 900}, T0 + 4)
    assert await used(store, reserve, T0 + 5) == 1100  # actual usage may pass the limit
    assert not (
        await store.check_and_add([CounterOp(reserve.key, 1000, MINUTE, 1)], T0 + 5)
    ).admitted


async def test_settle_lands_in_the_reserved_bucket(store: CounterStore, key: KeyFactory) -> None:
    reserve = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=400)
    result = await store.check_and_add([reserve], T0 + 50)
    assert result.reservation is not None
    # settled in the next bucket: corrects the previous one, which now weighs 50%
    await store.settle(result.reservation, {reserve.key: 100}, T0 + 90)
    assert await used(store, reserve, T0 + 90) == 50
    current = bucket_key(reserve.key, MINUTE, int(T0) + 60)
    assert (await store.check_and_add([reserve], T0 + 91)).states[0].bucket_start == T0 + 60
    assert current.endswith(str(int(T0) + 60))


async def test_settle_unknown_key_rejected(store: CounterStore, key: KeyFactory) -> None:
    result = await store.check_and_add([CounterOp(key("a"), 10, MINUTE, 1)], T0)
    assert result.reservation is not None
    with pytest.raises(ValueError, match="not in the reservation"):
        await store.settle(result.reservation, {key("b"): 1}, T0)


async def test_release_and_floor_at_zero(store: CounterStore, key: KeyFactory) -> None:
    ops = [
        CounterOp(key("req"), limit=10, window=MINUTE, amount=1),
        CounterOp(key("tok"), limit=1000, window=MONTH, amount=700),
    ]
    result = await store.check_and_add(ops, T0)
    assert result.reservation is not None
    await store.release(result.reservation, T0 + 1)
    assert [await used(store, op, T0 + 2) for op in ops] == [0, 0]
    await store.release(result.reservation, T0 + 3)  # twice: never below zero
    assert [await used(store, op, T0 + 4) for op in ops] == [0, 0]


async def test_settle_after_bucket_stopped_counting_is_ignored(
    store: CounterStore, key: KeyFactory
) -> None:
    op = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=100)
    result = await store.check_and_add([op], T0)
    assert result.reservation is not None
    await store.settle(result.reservation, {op.key: 900}, T0 + 600)
    assert await used(store, op, T0 + 600) == 0


@pytest.mark.parametrize(
    ("window", "now", "bucket_start", "expected_ttl"),
    [
        (MINUTE, T0 + 10, T0, 111.0),
        (Window(WindowUnit.HOUR, 2), T0 + 3600, T0, 3 * 3600 + 1.0),
        (MONTH, ts(2026, 1, 31, 12), ts(2026, 1, 1), 12 * 3600 + 86400.0),
    ],
)
async def test_keys_carry_an_expiry(
    store: CounterStore,
    key: KeyFactory,
    window: Window,
    now: float,
    bucket_start: float,
    expected_ttl: float,
) -> None:
    op = CounterOp(key("tok"), limit=10, window=window, amount=1)
    await store.check_and_add([op], now)
    bucket = bucket_key(op.key, window, int(bucket_start))
    assert await bucket_ttl(store, bucket, now) == pytest.approx(expected_ttl, abs=2)


@pytest.mark.parametrize(("limit", "prefill", "reserve"), [(1000, 900, 30), (1000, 990, 7)])
async def test_concurrent_reservations_never_overshoot(
    store: CounterStore, key: KeyFactory, limit: int, prefill: int, reserve: int
) -> None:
    app = CounterOp(key("tok"), limit=limit, window=MINUTE, amount=reserve)
    # A wider counter of the same scope (one call's keys share a hash tag, see the
    # CounterStore contract: Redis Cluster runs one script per slot).
    org = CounterOp(key("org-tok"), limit=10 * limit, window=MINUTE, amount=reserve)
    assert (await store.check_and_add([CounterOp(app.key, limit, MINUTE, prefill)], T0)).admitted
    results = await asyncio.gather(*(store.check_and_add([app, org], T0 + 1) for _ in range(50)))
    admitted = sum(r.admitted for r in results)
    assert admitted == (limit - prefill) // reserve
    # all or nothing held for every request: both counters moved together
    assert await used(store, app, T0 + 2) == prefill + admitted * reserve <= limit
    assert await used(store, org, T0 + 2) == admitted * reserve


async def test_every_exceeding_op_gets_retry_at(store: CounterStore, key: KeyFactory) -> None:
    ops = [
        CounterOp(key("fits"), limit=100, window=MINUTE, amount=10),
        CounterOp(key("minute"), limit=5, window=MINUTE, amount=10),
        CounterOp(key("month"), limit=5, window=MONTH, amount=3),
    ]
    await store.check_and_add([CounterOp(ops[2].key, 5, MONTH, 4)], T0)
    result = await store.check_and_add(ops, T0 + 1)
    assert result.denied_index == 1
    assert [s.retry_at for s in result.states] == [None, None, ts(2026, 2, 1)]


@pytest.mark.parametrize(
    ("prefill_at", "prefill", "ask", "ask_at"),
    [(10.0, 97, 13, 61.0), (30.0, 70, 45, 70.0), (59.0, 33, 70, 60.5), (5.0, 100, 1, 30.0)],
)
async def test_admitted_at_retry_at(
    store: CounterStore,
    key: KeyFactory,
    prefill_at: float,
    prefill: int,
    ask: int,
    ask_at: float,
) -> None:
    await store.check_and_add([CounterOp(key("t"), 100, MINUTE, prefill)], T0 + prefill_at)
    op = CounterOp(key("t"), 100, MINUTE, ask)
    denied = await store.check_and_add([op], T0 + ask_at)
    retry_at = denied.states[0].retry_at
    assert not denied.admitted
    assert retry_at is not None
    assert not (await store.check_and_add([op], retry_at - 0.01)).admitted
    assert (await store.check_and_add([op], retry_at)).admitted


async def test_concurrent_reserve_then_settle_stays_bounded(
    store: CounterStore, key: KeyFactory
) -> None:
    """Reserve, yield, settle to the actual (at most the estimate): the limit holds."""
    limit, estimate = 1000, 40
    op = CounterOp(key("tok"), limit=limit, window=MINUTE, amount=estimate)
    settled: list[int] = []

    async def one_request(i: int) -> None:
        result = await store.check_and_add([op], T0 + 1)
        if result.reservation is None:
            return
        await asyncio.sleep(0)
        actual = estimate - i % 3 * 10  # 40, 30 or 20
        await store.settle(result.reservation, {op.key: actual}, T0 + 2)
        settled.append(actual)

    for _ in range(20):  # waves until full: room freed by settling is reused
        before = len(settled)
        await asyncio.gather(*(one_request(i) for i in range(50)))
        if len(settled) == before:
            break
    final = await used(store, op, T0 + 3)
    assert final == sum(settled)
    assert limit - estimate < final <= limit


# -- huge and negative numbers (a bogus upstream usage must not poison a counter) ----


@pytest.mark.parametrize("actual", [10**30, 4 * 10**18, 2**63 - 1, 2**63])
async def test_settle_huge_actual_is_bounded_and_never_raises(
    store: CounterStore, key: KeyFactory, actual: int
) -> None:
    op = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=100)
    result = await store.check_and_add([op], T0)
    assert result.reservation is not None
    await store.settle(result.reservation, {op.key: actual}, T0 + 1)
    assert await used(store, op, T0 + 2) == MAX_COUNTER_VALUE
    # Settling again (another huge response) stays at the ceiling: no overflow error.
    again = await store.check_and_add([CounterOp(op.key, 2**62, MINUTE, 10**18)], T0 + 3)
    assert again.admitted
    await store.adjust([Adjustment(op.key, MINUTE, int(T0), 10**30)], T0 + 4)
    assert await used(store, op, T0 + 5) == MAX_COUNTER_VALUE


async def test_huge_amount_adds_at_most_the_ceiling(store: CounterStore, key: KeyFactory) -> None:
    op = CounterOp(key("tok"), limit=10**30, window=MINUTE, amount=10**25)
    assert (await store.check_and_add([op], T0)).admitted
    assert (await store.check_and_add([op], T0 + 1)).admitted
    assert await used(store, op, T0 + 2) == MAX_COUNTER_VALUE


@pytest.mark.parametrize("actual", [-1005, -(10**30)])
async def test_settle_negative_actual_takes_back_only_its_own_reservation(
    store: CounterStore, key: KeyFactory, actual: int
) -> None:
    other = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=300)
    await store.check_and_add([other], T0)  # another request's share of the bucket
    op = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=100)
    result = await store.check_and_add([op], T0 + 1)
    assert result.reservation is not None
    await store.settle(result.reservation, {op.key: actual}, T0 + 2)
    # Settled as 0: its own 100 go back, the other request's 300 stay.
    assert await used(store, op, T0 + 3) == 300
    # A raw adjust past zero stops at zero.
    await store.adjust([Adjustment(op.key, MINUTE, int(T0), -(10**30))], T0 + 4)
    assert await used(store, op, T0 + 5) == 0


# -- adjust: every entry of a settlement, exact amounts, the bucket's own expiry ---------


async def test_settle_skips_a_stopped_bucket_and_still_corrects_the_next(
    store: CounterStore, key: KeyFactory
) -> None:
    second = CounterOp(key("sec"), limit=100, window=Window(WindowUnit.SECOND), amount=50)
    hour = CounterOp(key("hour"), limit=1000, window=Window(WindowUnit.HOUR), amount=500)
    result = await store.check_and_add([second, hour], T0)
    assert result.reservation is not None
    # 10 s later the 1-second bucket no longer counts; the hour one does
    await store.settle(result.reservation, {second.key: 5, hour.key: 120}, T0 + 10)
    assert await used(store, hour, T0 + 11) == 120


async def test_settle_up_by_one_from_a_zero_reservation_creates_the_bucket(
    store: CounterStore, key: KeyFactory
) -> None:
    op = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=0)
    result = await store.check_and_add([op], T0)
    assert result.reservation is not None
    await store.settle(result.reservation, {op.key: 1}, T0 + 1)
    assert await used(store, op, T0 + 2) == 1


@pytest.mark.parametrize(
    ("window", "expected_ttl"),
    # until the end of the next bucket plus a second of slack
    [(MINUTE, 120 - 10 + 1.0), (Window(WindowUnit.DAY), 2 * 86400 - 10 + 1.0)],
)
async def test_a_settled_bucket_keeps_the_bucket_expiry(
    store: CounterStore, key: KeyFactory, window: Window, expected_ttl: float
) -> None:
    op = CounterOp(key("tok"), limit=1000, window=window, amount=0)
    result = await store.check_and_add([op], T0 + 10)
    assert result.reservation is not None
    await store.settle(result.reservation, {op.key: 40}, T0 + 10)  # creates the bucket
    bucket = bucket_key(op.key, window, int(T0))
    assert await bucket_ttl(store, bucket, T0 + 10) == pytest.approx(expected_ttl, abs=2)


async def test_settling_some_keys_leaves_the_others_reserved(
    store: CounterStore, key: KeyFactory
) -> None:
    req = CounterOp(key("req"), limit=10, window=MINUTE, amount=1)
    tok = CounterOp(key("tok"), limit=1000, window=MINUTE, amount=500)
    result = await store.check_and_add([req, tok], T0)
    assert result.reservation is not None
    await store.settle(result.reservation, {tok.key: 120}, T0 + 1)
    assert [await used(store, op, T0 + 2) for op in (req, tok)] == [1, 120]


# -- what a result reports ------------------------------------------------------------


async def test_states_describe_each_counter(store: CounterStore, key: KeyFactory) -> None:
    ops = [CounterOp(key("a"), 10, MINUTE, 1), CounterOp(key("b"), 7, MONTH, 2)]
    result = await store.check_and_add(ops, T0 + 5)
    assert [(s.key, s.limit, s.window) for s in result.states] == [
        (ops[0].key, 10, MINUTE),
        (ops[1].key, 7, MONTH),
    ]


@pytest.mark.parametrize("window", [MINUTE, MONTH])
async def test_an_unused_counter_resets_now(
    store: CounterStore, key: KeyFactory, window: Window
) -> None:
    state = (await store.check_and_add([CounterOp(key("a"), 10, window, 0)], T0 + 5)).states[0]
    assert (state.used, state.reset_at) == (0, T0 + 5)


async def test_a_counter_used_only_in_the_previous_bucket_resets_at_this_bucket_end(
    store: CounterStore, key: KeyFactory
) -> None:
    await store.check_and_add([CounterOp(key("a"), 10, MINUTE, 4)], T0 + 5)
    state = (await store.check_and_add([CounterOp(key("a"), 10, MINUTE, 0)], T0 + 70)).states[0]
    assert state.used == 4  # ceil(4 * 50/60)
    assert state.reset_at == T0 + 120


async def test_an_op_that_exactly_fits_a_denied_request_has_no_retry(
    store: CounterStore, key: KeyFactory
) -> None:
    ops = [
        CounterOp(key("fits"), limit=10, window=MINUTE, amount=10),
        CounterOp(key("over"), limit=5, window=MINUTE, amount=6),
    ]
    result = await store.check_and_add(ops, T0 + 1)
    assert result.denied_index == 1
    assert result.states[0].retry_at is None
    assert result.states[1].retry_at is None  # 6 > 5: never fits


@pytest.mark.parametrize(
    ("ask", "retry_at"),
    [
        # 60 in this bucket + ceil(30 * 59/60) + 50 > 100: wait for the next bucket,
        # where this one's 60 decays until 60 * w + 50 <= 100, i.e. w <= 5/6: T0 + 130
        (50, T0 + 130),
        # 60 + ceil(30 * w) + 40 <= 100 once the previous 30 has decayed fully: T0 + 120
        (40, T0 + 120),
        # 60 + ceil(30 * w) + 25 <= 100 once w <= 1/2: half-way through, T0 + 90
        (25, T0 + 90),
    ],
)
async def test_retry_with_both_buckets_in_use(
    store: CounterStore, key: KeyFactory, ask: int, retry_at: float
) -> None:
    await store.check_and_add([CounterOp(key("t"), 100, MINUTE, 30)], T0 + 10)
    # previous bucket: 30 at full weight at T0 + 60, so 60 more fit
    assert (await store.check_and_add([CounterOp(key("t"), 100, MINUTE, 60)], T0 + 60)).admitted
    op = CounterOp(key("t"), 100, MINUTE, ask)
    denied = await store.check_and_add([op], T0 + 60.5)
    assert not denied.admitted
    found = denied.states[0].retry_at
    assert found == pytest.approx(retry_at, abs=0.0025)
    assert found is not None
    assert not (await store.check_and_add([op], found - 0.01)).admitted
    assert (await store.check_and_add([op], found)).admitted
