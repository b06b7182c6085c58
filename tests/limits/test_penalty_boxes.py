"""One contract for both penalty boxes (in-process for standalone mode, Redis for
production, on one Redis or a Redis Cluster): what `until` answers after `impose`, and
that overlapping penalties keep the later end, in whichever order (or concurrently)
they arrive."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest

from policy_sidecar.cli.ports import free_port
from policy_sidecar.counters.values import CounterStoreUnavailable
from policy_sidecar.limits.penalties import (
    InMemoryPenaltyBox,
    Penalty,
    PenaltyBox,
    RedisPenaltyBox,
    penalty_key,
)
from policy_sidecar.redis_clients import RedisClient, open_redis
from tests.redis_cluster import LocalRedisCluster

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A real time: the Redis box turns the penalty's length into a key expiry.
NOW = 1_800_000_000.0


def _url(request: pytest.FixtureRequest, backend: str) -> str:
    if backend.startswith("cluster"):
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return REDIS_URL


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        # A client that decodes replies to str (the wiring's does not) reads the same.
        pytest.param("redis-str", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis_cluster),
        pytest.param("cluster-str", marks=pytest.mark.redis_cluster),
    ]
)
async def box(request: pytest.FixtureRequest) -> AsyncIterator[PenaltyBox]:
    if request.param == "memory":
        yield InMemoryPenaltyBox()
        return
    client = open_redis(
        _url(request, request.param),
        socket_timeout=5.0,
        socket_connect_timeout=5.0,
        decode_responses=request.param.endswith("-str"),
    )
    yield RedisPenaltyBox(client)
    await client.aclose()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis_cluster),
    ]
)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[RedisClient]:
    """A client of one Redis or of the Redis Cluster."""
    redis = open_redis(_url(request, request.param), socket_timeout=5.0)
    yield redis
    await redis.aclose()


def fresh_key() -> str:
    return penalty_key(f"o-{uuid.uuid4().hex[:8]}", "app", "prod")


async def test_no_penalty_until_one_is_imposed(box: PenaltyBox) -> None:
    assert await box.until(fresh_key(), NOW) is None


async def test_an_imposed_penalty_is_active_with_its_policy_until_its_end(box: PenaltyBox) -> None:
    key = fresh_key()
    penalty = Penalty(NOW + 30, "cel-1", "short answers")
    await box.impose(key, penalty, NOW)
    assert await box.until(key, NOW) == penalty
    assert await box.until(key, NOW + 29.5) == penalty
    # The end itself is free again.
    assert await box.until(key, NOW + 30) is None
    assert await box.until(key, NOW + 31) is None


async def test_penalties_are_per_key(box: PenaltyBox) -> None:
    key, other = fresh_key(), fresh_key()
    await box.impose(key, Penalty(NOW + 30, "p", "p"), NOW)
    assert await box.until(other, NOW) is None


async def test_a_later_penalty_that_ends_sooner_never_shortens_one(box: PenaltyBox) -> None:
    key = fresh_key()
    long = Penalty(NOW + 60, "cel-long", "long")
    await box.impose(key, long, NOW)
    await box.impose(key, Penalty(NOW + 15, "cel-short", "short"), NOW + 5)
    # The longer one stays, with the policy that imposed it.
    assert await box.until(key, NOW + 20) == long


async def test_a_penalty_ending_at_the_same_time_keeps_the_first(box: PenaltyBox) -> None:
    key = fresh_key()
    first = Penalty(NOW + 30, "cel-a", "a")
    await box.impose(key, first, NOW)
    await box.impose(key, Penalty(NOW + 30, "cel-b", "b"), NOW + 10)
    assert await box.until(key, NOW + 20) == first


async def test_a_penalty_that_ends_later_extends_one(box: PenaltyBox) -> None:
    key = fresh_key()
    await box.impose(key, Penalty(NOW + 15, "cel-short", "short"), NOW)
    long = Penalty(NOW + 65, "cel-long", "long")
    await box.impose(key, long, NOW + 5)
    assert await box.until(key, NOW + 20) == long


async def test_a_penalty_after_an_expired_one_starts_afresh(box: PenaltyBox) -> None:
    key = fresh_key()
    await box.impose(key, Penalty(NOW + 10, "old", "old"), NOW)
    fresh = Penalty(NOW + 25, "new", "new")
    await box.impose(key, fresh, NOW + 20)
    assert await box.until(key, NOW + 21) == fresh


async def test_concurrent_overlapping_penalties_keep_the_later_end(box: PenaltyBox) -> None:
    # Two responses of one app fail their post-checks at the same moment (two sidecar
    # replicas, or two requests on one loop): the later end must win in every order.
    for _ in range(5):
        key = fresh_key()
        long = Penalty(NOW + 60, "cel-long", "long")
        short = Penalty(NOW + 30, "cel-short", "short")
        await asyncio.gather(box.impose(key, long, NOW), box.impose(key, short, NOW))
        assert await box.until(key, NOW + 1) == long


async def test_redis_box_keeps_a_longer_end_written_by_an_older_version(
    client: RedisClient,
) -> None:
    # Older versions stored only the end time; such a penalty still counts.
    box = RedisPenaltyBox(client)
    key = fresh_key()
    await client.set(key, repr(NOW + 60), px=60_000)
    await box.impose(key, Penalty(NOW + 30, "cel-short", "short"), NOW)
    assert await box.until(key, NOW + 40) == Penalty(NOW + 60, "", "")
    later = Penalty(NOW + 90, "cel-long", "long")
    await box.impose(key, later, NOW)
    assert await box.until(key, NOW + 70) == later


def test_the_penalty_key_is_per_app_and_environment_in_the_org_slot() -> None:
    # The key format is shared by every replica (and survives upgrades): pinned.
    assert penalty_key("o1", "app-1", "prod") == "ps:{org:o1}:penalty:app-1:prod"
    keys = {penalty_key("o1", "app-1", "prod"), penalty_key("o1", "app-1", "dev")}
    keys |= {penalty_key("o1", "app-2", "prod"), penalty_key("o2", "app-1", "prod")}
    assert len(keys) == 4


async def test_the_memory_box_forgets_expired_penalties() -> None:
    # Standalone mode runs for months: an expired penalty must not stay in memory.
    box = InMemoryPenaltyBox()
    key = fresh_key()
    await box.impose(key, Penalty(NOW + 5, "p", "p"), NOW)
    assert await box.until(key, NOW + 6) is None
    assert box._active == {}


async def test_the_redis_key_expires_with_the_penalty(client: RedisClient) -> None:
    key = fresh_key()
    await RedisPenaltyBox(client).impose(key, Penalty(NOW + 30, "p", "p"), NOW)
    assert 25_000 < await client.pttl(key) <= 30_000


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_an_unreachable_redis_raises_unavailable(scheme: str) -> None:
    client = open_redis(f"{scheme}://127.0.0.1:{free_port()}/0", socket_connect_timeout=5.0)
    box = RedisPenaltyBox(client)
    try:
        with pytest.raises(CounterStoreUnavailable, match=r"^redis unavailable: "):
            await box.until(fresh_key(), NOW)
        with pytest.raises(CounterStoreUnavailable, match=r"^redis unavailable: "):
            await box.impose(fresh_key(), Penalty(NOW + 30, "p", "p"), NOW)
    finally:
        await client.aclose()
