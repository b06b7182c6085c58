"""Subscribes to the admin service's invalidations on Redis and drops cached data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from policy_sidecar.redis_clients import RedisClient

log = logging.getLogger(__name__)

CHANNEL = "policy_sidecar:invalidate"


class InvalidationListener:
    """Calls ``on_change(kind)`` for each published change; reconnects with backoff.
    After any reconnect it calls ``on_change("*")``: changes may have been missed.

    Two kinds of reconnect: this loop's own (the subscription failed), and redis-py's
    silent one inside ``listen()`` (its per-command retry reconnects and resubscribes
    without raising, e.g. after a quick Redis restart or a killed connection). The
    second is caught by a connect callback on the subscription's connection.

    On a Redis Cluster the admin service's classic PUBLISH reaches every node (the
    cluster bus broadcasts it), so the subscription may sit on any node: the first
    attempt takes the first node of the client's slot map, each reconnect the next
    one, so losing a node only moves the subscription (and re-validates the caches)."""

    def __init__(self, redis: RedisClient, on_change: Callable[[str], Awaitable[None]]) -> None:
        self._redis = redis
        self._attempt = 0
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self.received = 0
        self.revalidations = 0
        self.ready = asyncio.Event()
        self._revalidating: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="invalidations")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._revalidating):
            task.cancel()

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                async with await self._pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    connection = pubsub.connection
                    assert connection is not None
                    # Called on every later connect of this connection (weakly held);
                    # removed before the connection goes back to the pool.
                    connection.register_connect_callback(self._on_reconnect)
                    try:
                        if not first:
                            await self._revalidate()
                        first = False
                        delay = 0.1
                        self.ready.set()
                        async for message in pubsub.listen():
                            if message.get("type") == "message":
                                await self._handle(message.get("data"))
                    finally:
                        connection.deregister_connect_callback(self._on_reconnect)
            except (RedisError, RedisClusterException, OSError) as exc:
                self.ready.clear()
                self._attempt += 1
                log.warning("invalidation channel lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _pubsub(self) -> PubSub:
        if not isinstance(self._redis, RedisCluster):
            return self._redis.pubsub()
        await self._redis.initialize()  # discovers the nodes on first use
        nodes = self._redis.get_nodes()
        return self._redis.pubsub(node=nodes[self._attempt % len(nodes)])

    def _on_reconnect(self, _connection: object) -> None:
        # Inside redis-py's reconnect, right after it resubscribed: revalidate from a
        # task of our own so a slow cache reload cannot stall the subscription.
        log.warning("invalidation channel reconnected; re-validating the caches")
        task = asyncio.get_running_loop().create_task(self._revalidate(), name="revalidate")
        self._revalidating.add(task)
        task.add_done_callback(self._revalidating.discard)

    async def _revalidate(self) -> None:
        self.revalidations += 1
        try:
            await self._on_change("*")
        except Exception:
            log.exception("re-validating the caches after a reconnect failed")

    async def _handle(self, data: object) -> None:
        self.received += 1
        try:
            payload = json.loads(data if isinstance(data, (str, bytes)) else "{}")
            kind = str(payload.get("kind", "*"))
        except (ValueError, AttributeError):
            kind = "*"
        try:
            await self._on_change(kind)
        except Exception:
            log.exception("invalidation handler failed")
