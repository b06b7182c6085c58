"""Redis-only behaviour: script loading, unavailability, recovery, parity with memory."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from counter_helpers import KeyFactory, patient_redis_store
from redis.asyncio import Redis

from policy_sidecar.cli.ports import free_port
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.values import (
    Adjustment,
    CounterOp,
    CounterStoreUnavailable,
    Reservation,
    ReservedAmount,
    Window,
    WindowUnit,
)
from policy_sidecar.limits.penalties import RedisPenaltyBox

pytestmark = pytest.mark.redis

MINUTE = Window(WindowUnit.MINUTE)
T0 = 1_768_435_200.0  # 2026-01-15T00:00:00Z


class OwnRedis:
    """A throwaway redis-server this test may stop, restart and SCRIPT FLUSH."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
            self._proc = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (.ci/run installs it when absent)")
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisCounterStore]:
    store = patient_redis_store(redis_url, client_name=f"pstest-{uuid.uuid4().hex[:8]}")
    yield store
    await store.aclose()


async def test_script_is_called_by_sha(
    redis_store: RedisCounterStore, redis_url: str, key: KeyFactory
) -> None:
    await redis_store.check_and_add([CounterOp(key("a"), 1, MINUTE, 1)], T0)
    admin = Redis.from_url(redis_url)
    try:
        assert await admin.script_exists(redis_store.script_sha) == [True]
    finally:
        await admin.aclose()


async def test_script_reloaded_after_noscript(own_redis: OwnRedis) -> None:
    store = RedisCounterStore.from_url(own_redis.url)
    admin = Redis.from_url(own_redis.url)
    try:
        op = CounterOp("ps:{app:x}:a", 5, MINUTE, 1)
        await store.check_and_add([op], T0)
        await admin.script_flush()
        assert (await store.check_and_add([op], T0)).states[0].used == 2
    finally:
        await admin.aclose()
        await store.aclose()


async def test_unreachable_redis_raises_unavailable() -> None:
    # How quickly: bench/failure_latency.py (timings are benchmarks, not tests).
    store = RedisCounterStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    op = CounterOp("ps:{app:x}:a", 5, MINUTE, 1)
    reservation = Reservation((ReservedAmount(op.key, op.window, int(T0), op.amount),))
    try:
        with pytest.raises(CounterStoreUnavailable):
            await store.check_and_add([op], T0)
        with pytest.raises(CounterStoreUnavailable):
            await store.release(reservation, T0)
    finally:
        await store.aclose()


async def test_recovers_after_redis_restart(own_redis: OwnRedis) -> None:
    store = RedisCounterStore.from_url(own_redis.url)
    op = CounterOp("ps:{app:x}:a", 5, MINUTE, 1)
    try:
        assert (await store.check_and_add([op], T0)).admitted
        own_redis.stop()
        with pytest.raises(CounterStoreUnavailable):
            await store.check_and_add([op], T0)
        own_redis.start()  # same port, empty (nothing persisted)
        result = await store.check_and_add([op], T0)
        assert result.admitted
        assert result.states[0].used == 1
    finally:
        await store.aclose()


async def test_recovers_after_client_kill(
    redis_store: RedisCounterStore, redis_url: str, key: KeyFactory
) -> None:
    op = CounterOp(key("a"), 100, MINUTE, 1)
    await redis_store.check_and_add([op], T0)
    admin = Redis.from_url(redis_url)
    try:
        name = await redis_store._client.client_getname()
        ids = [c["id"] for c in await admin.client_list() if c.get("name") == name]
        assert ids
        for client_id in ids:
            await admin.client_kill_filter(_id=client_id)
    finally:
        await admin.aclose()
    # the stale pooled connection is retried once on a fresh one
    result = await redis_store.check_and_add([op], T0)
    assert result.states[0].used == 2


async def test_same_decisions_as_memory(redis_store: RedisCounterStore, key: KeyFactory) -> None:
    rng = random.Random(7)
    memory = InMemoryCounterStore()
    windows = [MINUTE, Window(WindowUnit.SECOND, 10), Window(WindowUnit.MONTH)]
    keys = [(key(f"k{i}"), windows[i % 3], rng.randint(5, 50)) for i in range(4)]
    now = T0
    for _ in range(300):
        now += rng.uniform(0, 4)
        chosen = rng.sample(keys, rng.randint(1, 3))
        ops = [CounterOp(k, lim, w, rng.randint(0, 12)) for k, w, lim in chosen]
        expected = await memory.check_and_add(ops, now)
        actual = await redis_store.check_and_add(ops, now)
        assert actual == expected
        if expected.reservation is not None and rng.random() < 0.3:
            actual_amounts = {op.key: rng.randint(0, 15) for op in ops}
            await memory.settle(expected.reservation, actual_amounts, now + 1)
            await redis_store.settle(expected.reservation, actual_amounts, now + 1)


async def test_burst_larger_than_pool_waits_for_connections(
    redis_url: str, key: KeyFactory
) -> None:
    store = patient_redis_store(redis_url, max_connections=4)
    op = CounterOp(key("a"), 1000, MINUTE, 1)
    try:
        results = await asyncio.gather(*(store.check_and_add([op], T0) for _ in range(200)))
    finally:
        await store.aclose()
    assert sum(r.admitted for r in results) == 200


def counting_calls(store: RedisCounterStore) -> list[list[str]]:
    """The keys of each script call the store sends from now on."""
    calls: list[list[str]] = []
    send = store._eval

    async def counted(keys: list[str], args: list[str]) -> Any:
        calls.append(keys)
        return await send(keys, args)

    store._eval = counted  # type: ignore[method-assign]
    return calls


async def used(store: RedisCounterStore, key: str) -> int:
    return (await store.check_and_add([CounterOp(key, 10**9, MINUTE, 0)], T0)).states[0].used


async def test_adjusts_of_one_step_go_as_one_call_with_the_same_outcome(
    redis_store: RedisCounterStore, key: KeyFactory
) -> None:
    memory = InMemoryCounterStore()
    a, b = key("a"), key("b", app="app-2")
    start = int(T0)
    for store in (memory, redis_store):
        await store.check_and_add([CounterOp(a, 100, MINUTE, 10), CounterOp(b, 100, MINUTE, 7)], T0)
    # The same bucket twice, a give-back below zero, another scope's bucket.
    calls = [
        [Adjustment(a, MINUTE, start, 5)],
        [Adjustment(a, MINUTE, start, -12), Adjustment(b, MINUTE, start, -2)],
        [Adjustment(b, MINUTE, start, -9)],
        [Adjustment(a, MINUTE, start, 4)],
    ]
    sent = counting_calls(redis_store)
    await asyncio.gather(*(redis_store.adjust(c, T0 + 1) for c in calls))
    assert len(sent) == 1 and len(sent[0]) == 5
    for c in calls:
        await memory.adjust(c, T0 + 1)
    assert [await used(redis_store, k) for k in (a, b)] == [await used(memory, k) for k in (a, b)]
    assert [await used(memory, k) for k in (a, b)] == [7, 0]
    # Calls of different steps go apart.
    sent.clear()
    for c in calls[:2]:
        await redis_store.adjust(c, T0 + 1)
    assert len(sent) == 2


async def test_a_joint_adjust_that_fails_fails_for_every_caller() -> None:
    store = RedisCounterStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    adjustment = Adjustment("ps:{app:x}:a", MINUTE, int(T0), 1)
    try:
        outcomes = await asyncio.gather(
            *(store.adjust([adjustment], T0) for _ in range(3)), return_exceptions=True
        )
    finally:
        await store.aclose()
    assert [type(o) for o in outcomes] == [CounterStoreUnavailable] * 3


async def test_a_caller_that_stops_waiting_cancels_no_other(
    redis_store: RedisCounterStore, key: KeyFactory
) -> None:
    a = key("a")
    await redis_store.check_and_add([CounterOp(a, 100, MINUTE, 10)], T0)
    first = asyncio.ensure_future(redis_store.adjust([Adjustment(a, MINUTE, int(T0), 1)], T0))
    second = asyncio.ensure_future(redis_store.adjust([Adjustment(a, MINUTE, int(T0), 2)], T0))
    await asyncio.sleep(0)  # both joined the step's call
    first.cancel()
    await second
    assert first.cancelled()
    # The call itself was already on its way: both adjustments were applied.
    assert await used(redis_store, a) == 13


async def test_a_one_connection_pool_serves_counters_and_penalties_in_turn(
    redis_url: str, key: KeyFactory
) -> None:
    # The counter store keeps a connection out of the pool between calls, never the
    # pool's only one: the penalty box (same pool) must not wait for it.
    store = patient_redis_store(redis_url, max_connections=1)
    box = RedisPenaltyBox(store.client)
    op = CounterOp(key("a"), 1000, MINUTE, 1)
    try:
        for expected in (1, 2):
            assert (await store.check_and_add([op], T0)).states[0].used == expected
            async with asyncio.timeout(2):
                assert await box.until(key("p"), T0) is None
    finally:
        await store.aclose()


async def test_a_call_cancelled_mid_round_trip_leaves_the_store_counting(
    redis_url: str, key: KeyFactory
) -> None:
    # A cancelled call drops its connection (its answer may still be on the way):
    # later calls, one after another and concurrent, read their own answers.
    store = patient_redis_store(redis_url, max_connections=4)
    op = CounterOp(key("a"), 10**6, MINUTE, 1)
    try:
        await store.check_and_add([op], T0)
        for _ in range(5):
            call = asyncio.ensure_future(store.check_and_add([op], T0))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
            before = await used(store, key("a"))
            result = await store.check_and_add([op], T0)
            assert result.states[0].used == before + 1
            both = await asyncio.gather(*(store.check_and_add([op], T0) for _ in range(8)))
            assert sorted(r.states[0].used for r in both) == list(range(before + 2, before + 10))
    finally:
        await store.aclose()
