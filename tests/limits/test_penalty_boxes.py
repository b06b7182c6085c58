"""One contract for both penalty boxes (in-process for standalone mode, Redis for
production): what `until` answers after `impose`, and that overlapping penalties keep
the later end, in whichever order (or concurrently) they arrive."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from policy_sidecar.limits.penalties import (
    InMemoryPenaltyBox,
    Penalty,
    PenaltyBox,
    RedisPenaltyBox,
    penalty_key,
)

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A real time: the Redis box turns the penalty's length into a key expiry.
NOW = 1_800_000_000.0


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def box(request: pytest.FixtureRequest) -> AsyncIterator[PenaltyBox]:
    if request.param == "memory":
        yield InMemoryPenaltyBox()
        return
    client = Redis.from_url(REDIS_URL, socket_timeout=5.0, socket_connect_timeout=5.0)
    yield RedisPenaltyBox(client)
    await client.aclose()


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


@pytest.mark.redis
async def test_redis_box_keeps_a_longer_end_written_by_an_older_version() -> None:
    # Older versions stored only the end time; such a penalty still counts.
    client = Redis.from_url(REDIS_URL, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        box = RedisPenaltyBox(client)
        key = fresh_key()
        await client.set(key, repr(NOW + 60), px=60_000)
        await box.impose(key, Penalty(NOW + 30, "cel-short", "short"), NOW)
        assert await box.until(key, NOW + 40) == Penalty(NOW + 60, "", "")
        later = Penalty(NOW + 90, "cel-long", "long")
        await box.impose(key, later, NOW)
        assert await box.until(key, NOW + 70) == later
    finally:
        await client.aclose()
