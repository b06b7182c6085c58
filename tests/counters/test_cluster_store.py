"""Redis Cluster behaviour of the counter store (the contract itself runs on the cluster
in test_contract.py): one slot per call, a cold client under concurrency, script
reloading on every node, unavailability."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from counter_helpers import KeyFactory, patient_redis_store
from redis.crc import key_slot

from policy_sidecar.cli.ports import free_port
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.values import (
    Adjustment,
    CounterOp,
    CounterStoreUnavailable,
    Window,
    WindowUnit,
    counter_key,
)
from policy_sidecar.counters.windows import bucket_key
from policy_sidecar.policy.account_limits import account_key
from tests.redis_cluster import LocalRedisCluster

pytestmark = pytest.mark.redis_cluster

MINUTE = Window(WindowUnit.MINUTE)
T0 = 1_768_435_200.0  # 2026-01-15T00:00:00Z


@pytest.fixture
async def cluster_store(redis_cluster: LocalRedisCluster) -> AsyncIterator[RedisCounterStore]:
    store = patient_redis_store(redis_cluster.url)
    yield store
    await store.aclose()


def _slot(key: str) -> int:
    return key_slot(key.encode())


async def test_a_call_across_slots_is_refused_before_anything_is_counted(
    cluster_store: RedisCounterStore, key: KeyFactory
) -> None:
    mine = CounterOp(key("rl"), limit=5, window=MINUTE, amount=1)
    other = CounterOp(key("rl", app="another-app"), limit=5, window=MINUTE, amount=1)
    assert _slot(mine.key) != _slot(other.key)
    with pytest.raises(ValueError, match="spans 2 Redis Cluster slots"):
        await cluster_store.check_and_add([mine, other], T0)
    with pytest.raises(ValueError, match="must share a hash tag"):
        await cluster_store.adjust(
            [Adjustment(mine.key, MINUTE, int(T0), 1), Adjustment(other.key, MINUTE, int(T0), 1)],
            T0,
        )
    # Nothing was added anywhere.
    probe = [CounterOp(mine.key, 5, MINUTE, 0)]
    assert (await cluster_store.check_and_add(probe, T0)).states[0].used == 0


def test_an_orgs_counters_share_a_slot_and_an_account_has_its_own() -> None:
    org_keys = [counter_key("org", "acme", *parts) for parts in (("rl", "p1"), ("tok", "p2"))]
    buckets = [bucket_key(k, MINUTE, int(T0)) for k in org_keys]
    assert len({_slot(k) for k in org_keys + buckets}) == 1
    account = account_key("openai-prod", "requests")
    assert _slot(account) == _slot(account_key("openai-prod", "tokens"))
    assert _slot(account) != _slot(org_keys[0])


async def test_a_cold_client_serves_a_burst(redis_cluster: LocalRedisCluster) -> None:
    # redis-py routes the first commands of a fresh cluster client before it knows the
    # slot map; a burst of them used to come back MOVED and reset the client's
    # connections under the others. The store loads the map first.
    for _ in range(3):
        store = patient_redis_store(redis_cluster.url)
        op = CounterOp(counter_key("app", "burst", "rl"), limit=10**6, window=MINUTE, amount=1)
        try:
            results = await asyncio.gather(
                *(store.check_and_add([op], T0) for _ in range(50)), return_exceptions=True
            )
        finally:
            await store.aclose()
        assert [r for r in results if isinstance(r, BaseException)] == []


async def test_the_script_is_reloaded_on_every_node_after_a_flush(
    cluster_store: RedisCounterStore, key: KeyFactory
) -> None:
    ops = [CounterOp(key("rl", app=f"app-{i}"), 5, MINUTE, 1) for i in range(12)]
    assert len({_slot(op.key) for op in ops}) > 1
    for op in ops:
        await cluster_store.check_and_add([op], T0)
    await cluster_store.client.script_flush()  # on every primary
    for op in ops:
        assert (await cluster_store.check_and_add([op], T0)).states[0].used == 2


async def test_an_unreachable_cluster_raises_unavailable() -> None:
    store = RedisCounterStore.from_url(f"redis+cluster://127.0.0.1:{free_port()}")
    op = CounterOp(counter_key("app", "x", "rl"), 5, MINUTE, 1)
    try:
        with pytest.raises(CounterStoreUnavailable, match=r"^redis unavailable: "):
            await store.check_and_add([op], T0)
        with pytest.raises(CounterStoreUnavailable, match=r"^redis unavailable: "):
            await store.adjust([Adjustment(op.key, MINUTE, int(T0), 1)], T0)
    finally:
        await store.aclose()


async def test_the_store_recovers_by_itself_after_a_failover() -> None:
    # A private cluster with one replica per master and a one-second node timeout: the
    # master of the counter's slot is killed; calls fail as unavailable (never another
    # error) until its replica has taken over, then count again without a restart.
    cluster = LocalRedisCluster(replicas=1, node_timeout_ms=1000)
    cluster.start()
    store = patient_redis_store(cluster.url)
    op = CounterOp(counter_key("org", "failover", "rl"), limit=10**6, window=MINUTE, amount=1)
    try:
        assert (await store.check_and_add([op], T0)).admitted
        cluster.kill_node(cluster.master_of(op.key))
        unavailable = 0
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                result = await store.check_and_add([op], T0)
                break
            except CounterStoreUnavailable:
                unavailable += 1
                assert asyncio.get_running_loop().time() < deadline, "no failover in 30 s"
                await asyncio.sleep(0.1)
        assert result.admitted
        assert unavailable >= 1  # the dead master was noticed, not silently skipped
        # Later calls go straight to the new master.
        assert (await store.check_and_add([op], T0)).admitted
    finally:
        await store.aclose()
        cluster.stop()
