"""Fixtures for the counter store contract tests (in-memory and real Redis)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from counter_helpers import KeyFactory, patient_redis_store
from redis.asyncio import Redis

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import counter_key
from tests.redis_cluster import LocalRedisCluster

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    """A prefix no other test (or worktree) uses, so nothing needs FLUSHALL."""
    return f"pstest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def key(key_prefix: str) -> KeyFactory:
    def make(*parts: str, app: str = "app-1") -> str:
        return counter_key("app", app, *parts, prefix=key_prefix)

    return make


async def delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis_cluster),
    ]
)
async def store(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str
) -> AsyncIterator[CounterStore]:
    """Every contract test runs against the in-memory store, one Redis and a Redis
    Cluster (the session's private one: its keys expire, nothing to delete)."""
    if request.param == "memory":
        memory = InMemoryCounterStore()
        yield memory
        await memory.aclose()
        return
    if request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        cluster_store = patient_redis_store(cluster.url)
        assert cluster_store.is_cluster
        yield cluster_store
        await cluster_store.aclose()
        return
    redis_store = patient_redis_store(redis_url)
    yield redis_store
    await redis_store.aclose()
    await delete_prefix(redis_url, key_prefix)
