"""Subscribes to the admin service's invalidations on Redis and drops cached data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CHANNEL = "policy_sidecar:invalidate"


class InvalidationListener:
    """Calls ``on_change(kind)`` for each published change; reconnects with backoff.
    After a reconnect it calls ``on_change("*")``: changes may have been missed."""

    def __init__(self, redis: Redis, on_change: Callable[[str], Awaitable[None]]) -> None:
        self._redis = redis
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self.received = 0
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="invalidations")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    if not first:
                        await self._on_change("*")
                    first = False
                    delay = 0.1
                    self.ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._handle(message.get("data"))
            except (RedisError, OSError) as exc:
                self.ready.clear()
                log.warning("invalidation channel lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

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
