"""The production caches: policies through three layers, identities, invalidations."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

import pytest

from policy_sidecar.identity.resolver import Identity, hash_api_key
from policy_sidecar.redis_clients import RedisClient, open_redis
from policy_sidecar.store.identity_cache import CachedIdentityResolver
from policy_sidecar.store.listener import CHANNEL, InvalidationListener
from policy_sidecar.store.policy_cache import CachedPolicySource
from policy_sidecar.store.records import KeyIdentity, Policy
from tests.conftest import FakeClock
from tests.redis_cluster import LocalRedisCluster

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WHO = Identity("app", "org", "dev", "k")


def policy(pid: str, models: list[str], *, config: Mapping[str, object] | None = None) -> Policy:
    now = datetime.now(UTC)
    return Policy(
        id=pid,
        name=pid,
        type="model_allowlist",
        org_id=None,
        app_id=None,
        environment=None,
        model_pattern=None,
        mode="enforce",
        priority=0,
        enabled=True,
        config=dict(config) if config is not None else {"models": models},
        version=1,
        created_at=now,
        updated_at=now,
    )


class Store:
    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)
        self.loads = 0

    async def load(self) -> Sequence[Policy]:
        self.loads += 1
        return self.policies


@pytest.fixture(
    params=["redis", pytest.param("cluster", marks=pytest.mark.redis_cluster)],
)
def redis_url(request: pytest.FixtureRequest) -> str:
    """The Redis-backed cache tests run on one Redis and on a Redis Cluster."""
    if request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return REDIS_URL


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    client = open_redis(redis_url)
    yield client
    await client.aclose()


def allowed(engine: object, model: str) -> bool:
    from policy_sidecar.policy import PreRequestContext

    ctx = PreRequestContext(10, 1, model, "org", "app", "dev", "openai", False, None)
    return engine.pre_check(WHO, ctx).allowed  # type: ignore[attr-defined,no-any-return]


@pytest.mark.redis
async def test_three_layers_and_invalidation(redis: RedisClient) -> None:
    namespace = uuid.uuid4().hex
    clock = FakeClock()
    store = Store([policy("p", ["a"])])
    first = CachedPolicySource(store.load, redis, local_ttl=5, clock=clock, namespace=namespace)
    second = CachedPolicySource(store.load, redis, local_ttl=5, clock=clock, namespace=namespace)
    engine = await first.engine_for(WHO)
    assert allowed(engine, "a") and not allowed(engine, "b")
    assert store.loads == 1
    # Another replica finds the Redis copy: no store load.
    assert allowed(await second.engine_for(WHO), "a")
    assert store.loads == 1
    # Within the local TTL the same engine object is served without I/O.
    assert await first.engine_for(WHO) is engine
    # A change in the store: invisible until invalidated (or the TTLs pass)...
    store.policies = [policy("p", ["b"])]
    assert allowed(await first.engine_for(WHO), "a")
    await first.invalidate()
    await second.invalidate()
    assert allowed(await second.engine_for(WHO), "b")
    assert allowed(await first.engine_for(WHO), "b")
    assert store.loads == 2
    # After the local TTL an unchanged Redis copy keeps the same engine (no rebuild).
    engine = await first.engine_for(WHO)
    clock.advance(6)
    assert await first.engine_for(WHO) is engine
    await redis.delete(f"ps:policies:{namespace}")


@pytest.mark.redis
async def test_a_stale_redis_copy_written_before_the_invalidation_is_ignored(
    redis: RedisClient,
) -> None:
    namespace = uuid.uuid4().hex
    clock = FakeClock()
    store = Store([policy("p", ["new"])])
    source = CachedPolicySource(store.load, redis, clock=clock, namespace=namespace)
    await source.invalidate()
    clock.advance(1)
    stale = {
        "loaded_at": clock.now - 5,
        "policies": [
            {
                "id": "p",
                "name": "p",
                "type": "model_allowlist",
                "org_id": None,
                "app_id": None,
                "environment": None,
                "model_pattern": None,
                "mode": "enforce",
                "priority": 0,
                "enabled": True,
                "config": {"models": ["old"]},
            }
        ],
    }
    await redis.set(f"ps:policies:{namespace}", json.dumps(stale))
    assert allowed(await source.engine_for(WHO), "new")
    await redis.delete(f"ps:policies:{namespace}")


async def test_without_redis_and_with_a_bad_row() -> None:
    store = Store([policy("good", ["a"]), policy("bad", [], config={"models": []})])
    source = CachedPolicySource(store.load, None)
    engine = await source.engine_for(WHO)
    # The invalid row is skipped (and logged); the valid one still applies.
    assert [d.id for d in engine.definitions] == ["good"]


async def test_identity_cache_ttls_invalidation_and_last_used() -> None:
    clock = FakeClock()
    calls: list[str] = []
    flushed: list[Mapping[str, datetime]] = []
    known = {
        hash_api_key("ps-good-key-000000000"): KeyIdentity("k1", "org", "app", "dev", None, None)
    }

    async def resolve(digest: str) -> KeyIdentity | None:
        calls.append(digest)
        return known.get(digest)

    async def record(seen: Mapping[str, datetime]) -> int:
        flushed.append(dict(seen))
        return len(seen)

    cache = CachedIdentityResolver(resolve, record, ttl=30, negative_ttl=5, clock=clock)
    assert (await cache.resolve("ps-good-key-000000000")) == Identity("app", "org", "dev", "k1")
    assert await cache.resolve("ps-good-key-000000000") is not None
    assert await cache.resolve("ps-bad-key-0000000000") is None
    assert await cache.resolve("ps-bad-key-0000000000") is None
    assert len(calls) == 2  # one store lookup each, then cached
    clock.advance(6)  # the negative answer expires first
    await cache.resolve("ps-bad-key-0000000000")
    await cache.resolve("ps-good-key-000000000")
    assert len(calls) == 3
    cache.invalidate()  # e.g. the key was revoked
    known.clear()
    assert await cache.resolve("ps-good-key-000000000") is None
    await cache.flush()
    assert list(flushed[0]) == ["k1"]


async def test_expiring_key_is_not_cached_past_its_expiry() -> None:
    clock = FakeClock()
    expires = datetime.fromtimestamp(clock.now + 2, UTC)
    ident = KeyIdentity("k1", "org", "app", "dev", None, expires)
    calls = 0

    async def resolve(digest: str) -> KeyIdentity | None:
        nonlocal calls
        calls += 1
        return ident if clock.now < expires.timestamp() else None

    async def record(seen: Mapping[str, datetime]) -> int:
        return 0

    cache = CachedIdentityResolver(resolve, record, clock=clock)
    assert await cache.resolve("ps-expiring-0000000000") is not None
    clock.advance(3)
    assert await cache.resolve("ps-expiring-0000000000") is None
    assert calls == 2


@pytest.mark.redis
async def test_listener_dispatches_kinds_and_survives_garbage(
    redis: RedisClient, redis_url: str
) -> None:
    seen: list[str] = []
    got = asyncio.Event()

    async def on_change(kind: str) -> None:
        seen.append(kind)
        if len(seen) >= 3:
            got.set()

    client = open_redis(redis_url)
    listener = InvalidationListener(client, on_change)
    listener.start()
    await asyncio.wait_for(listener.ready.wait(), 5)
    await redis.publish(CHANNEL, json.dumps({"kind": "policy", "id": "p1"}))
    await redis.publish(CHANNEL, b"not json")
    await redis.publish(CHANNEL, json.dumps({"kind": "api_key"}))
    await asyncio.wait_for(got.wait(), 5)
    await listener.close()
    await client.aclose()
    # On a cluster each PUBLISH may take another node (and path) to the subscriber.
    assert sorted(seen) == ["*", "api_key", "policy"]


async def test_a_lookup_under_way_during_an_invalidation_is_not_reused() -> None:
    # The key is revoked while a lookup is in flight: callers after the invalidation
    # must not get (or find cached) the answer read before it.
    gate = asyncio.Event()
    answers = [KeyIdentity("k1", "org", "app", "dev", None, None), None]
    calls = 0

    async def resolve(digest: str) -> KeyIdentity | None:
        nonlocal calls
        answer = answers[calls]
        calls += 1
        if answer is not None:
            await gate.wait()
        return answer

    async def record(seen: Mapping[str, datetime]) -> int:
        return 0

    cache = CachedIdentityResolver(resolve, record, clock=FakeClock())
    before = asyncio.create_task(cache.resolve("ps-revoked-key-000000"))
    await asyncio.sleep(0)
    cache.invalidate()
    assert await cache.resolve("ps-revoked-key-000000") is None  # a lookup of its own
    gate.set()
    assert await before is not None  # the earlier caller gets what it asked before
    assert await cache.resolve("ps-revoked-key-000000") is None  # not cached from it
    assert calls == 2


async def test_a_policy_load_under_way_during_an_invalidation_is_not_kept() -> None:
    # A policy changes while a refresh is reading the store: the refresh's (older)
    # answer must not be cached as fresh for the local TTL, or the change would wait
    # for it to expire.
    gate = asyncio.Event()
    versions = [[policy("p", ["old"])], [policy("p", ["new"])]]
    loads = 0

    async def load() -> Sequence[Policy]:
        nonlocal loads
        answer = versions[min(loads, 1)]
        loads += 1
        if loads == 1:
            await gate.wait()
        return answer

    source = CachedPolicySource(load, None, local_ttl=60, clock=FakeClock())
    before = asyncio.create_task(source.engine_for(WHO))
    await asyncio.sleep(0)
    await source.invalidate()
    gate.set()
    assert allowed(await before, "old")  # the earlier caller gets what it asked for
    assert allowed(await source.engine_for(WHO), "new")  # then a load of its own
    assert loads == 2
