"""Invalidations on a Redis Cluster: the admin service's classic PUBLISH reaches every
node (the cluster bus broadcasts it), so a sidecar's subscription on any node hears it,
and moves to another node when its own goes away. Real clusters throughout."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from policy_sidecar.redis_clients import open_redis
from policy_sidecar.store.invalidation import PolicyChange
from policy_sidecar.store.listener import CHANNEL, InvalidationListener
from policy_sidecar.store.redis_publisher import PublishResult, RedisPolicyChangePublisher
from tests.redis_cluster import LocalRedisCluster

pytestmark = pytest.mark.redis_cluster

DEADLINE = 30.0


async def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE}s: {what}"
        await asyncio.sleep(0.05)


async def _subscribed_port(cluster: LocalRedisCluster, name: str, *, skip: int = 0) -> int:
    """The node that holds the listener's subscription (found by its client name)."""
    for port in cluster.ports:
        if port == skip:
            continue
        node = Redis(port=port)
        try:
            if any(c.get("name") == name for c in await node.client_list()):
                return port
        finally:
            await node.aclose()
    raise AssertionError(f"no node holds a connection named {name}")


async def test_a_change_published_through_the_cluster_reaches_the_listener(
    redis_cluster: LocalRedisCluster,
) -> None:
    seen: list[str] = []

    async def on_change(kind: str) -> None:
        seen.append(kind)

    results: list[PublishResult] = []
    admin = open_redis(redis_cluster.url)
    sidecar = open_redis(redis_cluster.url)
    publisher = RedisPolicyChangePublisher(admin, on_result=results.append)
    listener = InvalidationListener(sidecar, on_change)
    listener.start()
    try:
        await asyncio.wait_for(listener.ready.wait(), DEADLINE)
        await publisher.publish(PolicyChange(kind="policy", action="updated", id="pol_1"))
        await publisher.publish(PolicyChange(kind="api_key", action="deleted", id="key_1"))
        # Each PUBLISH goes to a random master and reaches the subscribed node over
        # the cluster bus, so two changes may arrive in either order (harmless: each
        # only drops caches that reload from the store).
        await _eventually(lambda: sorted(seen) == ["api_key", "policy"], "both changes heard")
        assert results == ["published", "published"]
        # Whichever node a publisher happens to reach, every subscriber hears it.
        for i, url in enumerate(redis_cluster.node_urls):
            node = Redis.from_url(url)
            try:
                await node.publish(CHANNEL, f'{{"kind": "model", "id": "m{i}"}}')
            finally:
                await node.aclose()
        await _eventually(lambda: len(seen) == 5, "a change published on each node")
        assert seen[2:] == ["model"] * 3
        assert listener.revalidations == 0
    finally:
        await listener.close()
        await publisher.close()
        await admin.aclose()
        await sidecar.aclose()


async def test_the_listener_moves_to_another_node_when_its_node_dies() -> None:
    # A private cluster: this test kills one of its nodes.
    cluster = LocalRedisCluster()
    cluster.start()
    name = f"ps-listener-{uuid.uuid4().hex[:12]}"
    seen: list[str] = []

    async def on_change(kind: str) -> None:
        seen.append(kind)

    sidecar = open_redis(cluster.url, client_name=name, socket_timeout=5.0)
    listener = InvalidationListener(sidecar, on_change)
    listener.start()
    try:
        await asyncio.wait_for(listener.ready.wait(), DEADLINE)
        first = await _subscribed_port(cluster, name)
        cluster.kill_node(first)
        # Changes may have been missed meanwhile: the caches are re-validated...
        await _eventually(lambda: "*" in seen, "re-validation after the node died")
        await asyncio.wait_for(listener.ready.wait(), DEADLINE)
        await _subscribed_port(cluster, name, skip=first)  # on a surviving node
        # ...and later changes are heard again, published through a surviving node.
        survivor = Redis(port=next(p for p in cluster.ports if p != first))
        try:
            await survivor.publish(CHANNEL, '{"kind": "policy"}')
        finally:
            await survivor.aclose()
        await _eventually(lambda: seen[-1:] == ["policy"], "a change after the move")
    finally:
        await listener.close()
        await sidecar.aclose()
        cluster.stop()
