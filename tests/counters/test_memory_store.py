"""What only the in-process store has: expiry by the caller's clock and bounded memory."""

from __future__ import annotations

from policy_sidecar.counters.memory import _SWEEP_EVERY, InMemoryCounterStore
from policy_sidecar.counters.values import Adjustment, CounterOp, Window, WindowUnit
from policy_sidecar.counters.windows import bucket_key

SECOND = Window(WindowUnit.SECOND)


async def test_ttl_of_unknown_and_expired_buckets_is_none() -> None:
    store = InMemoryCounterStore()
    assert store.ttl("nothing", 0.0) is None
    await store.check_and_add([CounterOp("k", 10, SECOND, 1)], 0.0)
    bucket = bucket_key("k", SECOND, 0)
    # a 1 s bucket counts until the end of the next one (2 s), plus 1 s of slack
    assert store.ttl(bucket, 0.5) == 2.5
    assert store.ttl(bucket, 3.0) is None


async def test_expired_buckets_are_swept_once_every_so_many_calls() -> None:
    store = InMemoryCounterStore()
    await store.check_and_add([CounterOp("old", 10, SECOND, 1)], 0.0)  # expires at 3.0
    assert store.bucket_count() == 1
    probe = [CounterOp("probe", 10, SECOND, 0)]  # a read: stores nothing
    for _ in range(_SWEEP_EVERY - 2):
        await store.check_and_add(probe, 3.0)
    # amortised: no sweep before the last call of the period
    assert store.bucket_count() == 1
    await store.check_and_add(probe, 3.0)  # the expiry instant: no longer held
    assert store.bucket_count() == 0


async def test_sweep_keeps_buckets_that_still_count() -> None:
    store = InMemoryCounterStore()
    await store.check_and_add([CounterOp("live", 10, SECOND, 1)], 2.5)  # expires at 5.0
    probe = [CounterOp("probe", 10, SECOND, 0)]
    for _ in range(_SWEEP_EVERY - 1):
        await store.check_and_add(probe, 3.0)
    assert store.bucket_count() == 1
    assert store.ttl(bucket_key("live", SECOND, 2), 3.0) == 2.0


async def test_adjusting_a_bucket_that_no_longer_counts_stores_nothing() -> None:
    store = InMemoryCounterStore()
    minute = Window(WindowUnit.MINUTE)
    # bucket [0, 60) counts until 120: at 120 exactly, and later, it is left alone
    await store.adjust([Adjustment("k", minute, 0, 5)], 120.0)
    await store.adjust([Adjustment("k", minute, 0, 5)], 500.0)
    assert store.bucket_count() == 0
    await store.adjust([Adjustment("k", minute, 0, 5)], 119.0)
    assert store.bucket_count() == 1
