"""Subscribes to the admin service's invalidations on Redis and drops cached data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from policy_sidecar.redis_clients import RedisClient

log = logging.getLogger(__name__)

CHANNEL = "policy_sidecar:invalidate"


class InvalidationListener:
    """Calls ``on_change(kind)`` for each published change; reconnects with backoff.
    After any reconnect it calls ``on_change("*")``: changes may have been missed.

    ``ready`` is set once the server has *confirmed* the subscription (not when the
    SUBSCRIBE was sent): a change published after that is heard, and the re-validation
    after a reconnect runs only then, so nothing published in between is missed.

    Two kinds of reconnect: this loop's own (the subscription failed), and redis-py's
    silent one inside a read (its per-command retry reconnects and resubscribes
    without raising, e.g. after a quick Redis restart or a killed connection). The
    second is seen by a connect callback on the subscription's connection; the caches
    are re-validated when that resubscription is confirmed.

    A connection can also die without a word (a peer gone without a reset, a Redis
    that stopped answering): redis-py's pub/sub reads wait forever. So after
    ``ping_after`` seconds without a message the listener sends a PING, and a server
    that has said nothing ``answer_within`` seconds later counts as gone: reconnect and
    re-validate. Connecting and subscribing get ``answer_within`` seconds too.

    On a Redis Cluster the admin service's classic PUBLISH reaches every node (the
    cluster bus broadcasts it), so the subscription may sit on any node: the first
    attempt takes the first node of the client's slot map, each reconnect the next
    one, so losing a node only moves the subscription (and re-validates the caches)."""

    def __init__(
        self,
        redis: RedisClient,
        on_change: Callable[[str], Awaitable[None]],
        *,
        ping_after: float = 5.0,
        answer_within: float = 10.0,
    ) -> None:
        self._redis = redis
        self._attempt = 0
        self._on_change = on_change
        self._ping_after = ping_after
        self._answer_within = answer_within
        self._task: asyncio.Task[None] | None = None
        # Set by redis-py's silent reconnect: re-validate once it has resubscribed.
        self._resubscribed = False
        self.received = 0
        self.revalidations = 0
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="invalidations")

    async def close(self) -> None:
        task = self._task
        if task is None:
            return
        # Cancel until it ends: a cancellation that lands in a client library's own
        # cleanup can come out as a TimeoutError (see `_run`) and be lost.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                async with self._subscription() as pubsub:
                    connection = pubsub.connection
                    assert connection is not None
                    # Called on every later connect of this connection (weakly held);
                    # removed before the connection goes back to the pool.
                    connection.register_connect_callback(self._on_reconnect)
                    self._resubscribed = False  # a fresh subscription re-validates below
                    try:
                        if not first:
                            await self._revalidate()
                        first = False
                        delay = 0.1
                        self.ready.set()
                        await self._listen(pubsub)
                    finally:
                        connection.deregister_connect_callback(self._on_reconnect)
            except (RedisError, RedisClusterException, OSError) as exc:
                # (TimeoutError, from the deadlines below, is an OSError.) A `close()`
                # that arrived meanwhile wins: asyncio.timeout turns a cancellation into
                # TimeoutError when its own deadline passes in the same step, and the
                # redis-py calls under it retry on TimeoutError; so a cancelled listener
                # could carry on for good (and `close()` wait for it: seen under load).
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc
                self.ready.clear()
                self._attempt += 1
                log.warning("invalidation channel lost (%r); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @contextlib.asynccontextmanager
    async def _subscription(self) -> AsyncIterator[PubSub]:
        """A subscription the server has confirmed, within ``answer_within``."""
        async with await self._pubsub() as pubsub:
            async with asyncio.timeout(self._answer_within):
                await pubsub.subscribe(CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=self._answer_within)
                    if message is not None and message.get("type") == "subscribe":
                        break
            yield pubsub

    async def _pubsub(self) -> PubSub:
        if not isinstance(self._redis, RedisCluster):
            return self._redis.pubsub()
        async with asyncio.timeout(self._answer_within):
            await self._redis.initialize()  # discovers the nodes on first use
        nodes = self._redis.get_nodes()
        return self._redis.pubsub(node=nodes[self._attempt % len(nodes)])

    async def _listen(self, pubsub: PubSub) -> None:
        """Until the connection fails or stops answering (raises either way)."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        heard = loop.time()  # when the server last said anything
        pinged: float | None = None  # when the PING still unanswered was sent
        while True:
            if task is not None and task.cancelling():  # a cancel lost below (see `_run`)
                raise asyncio.CancelledError
            due = heard + self._ping_after if pinged is None else pinged + self._answer_within
            message = await pubsub.get_message(timeout=max(due - loop.time(), 0.001))
            now = loop.time()
            if message is not None:
                heard, pinged = now, None
                await self._dispatch(message)
            elif now < due:
                continue
            elif pinged is None:
                await pubsub.ping()
                pinged = now
            else:
                raise RedisConnectionError(
                    f"no answer from Redis within {self._answer_within}s of a PING"
                )

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "message":
            await self._handle(message.get("data"))
        elif kind == "subscribe" and self._resubscribed:
            self._resubscribed = False
            await self._revalidate()

    def _on_reconnect(self, _connection: object) -> None:
        # Inside redis-py's reconnect, right after it re-sent the SUBSCRIBE: the caches
        # are re-validated when the server confirms it (see `_dispatch`).
        log.warning("invalidation channel reconnected; re-validating the caches")
        self._resubscribed = True

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
