"""Cache-through identity resolution: API key hash → identity, from Postgres, cached
in-process; keeps ``last_used_at`` roughly current without a write per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from policy_sidecar.identity import Identity, hash_api_key
from policy_sidecar.metrics import CACHE_REQUESTS, STORE_ERRORS
from policy_sidecar.store.types import KeyIdentity

log = logging.getLogger(__name__)


class CachedIdentityResolver:
    """Positive answers live ``ttl`` seconds, negative ones ``negative_ttl``; at most
    ``max_entries`` (least recently used dropped). A key revoked in the admin service
    stops working at once through ``invalidate`` (published on Redis), at the latest
    after ``ttl``."""

    def __init__(
        self,
        resolve: Callable[[str], Awaitable[KeyIdentity | None]],
        record_last_used: Callable[[Mapping[str, datetime]], Awaitable[int]],
        *,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolve = resolve
        self._record_last_used = record_last_used
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Identity | None]] = OrderedDict()
        self._seen: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def resolve(self, api_key: str) -> Identity | None:
        digest = hash_api_key(api_key)
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(digest)
            identity = hit[1]
            CACHE_REQUESTS.labels("identities", "hit").inc()
        else:
            CACHE_REQUESTS.labels("identities", "miss").inc()
            try:
                found = await self._resolve(digest)
            except Exception:
                STORE_ERRORS.labels("identities").inc()
                raise
            identity = (
                Identity(
                    found.app_id,
                    found.org_id,
                    found.environment,
                    found.key_id,
                    found.environment_enabled,
                )
                if found is not None
                else None
            )
            expires = now + (self._ttl if identity is not None else self._negative_ttl)
            if found is not None and found.expires_at is not None:
                expires = min(expires, found.expires_at.timestamp())
            self._cache[digest] = (expires, identity)
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        if identity is not None:
            self._seen[identity.key_id] = datetime.fromtimestamp(now, UTC)
        return identity

    def invalidate(self) -> None:
        self._cache.clear()

    def start(self, interval: float = 10.0) -> None:
        self._task = asyncio.create_task(self._flush_loop(interval), name="last-used")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        seen, self._seen = self._seen, {}
        if not seen:
            return
        try:
            await self._record_last_used(seen)
        except Exception as exc:  # a missed update is harmless: the next flush retries
            log.warning("could not record last use of %d keys: %s", len(seen), exc)
            for key, when in seen.items():
                self._seen.setdefault(key, when)

    async def _flush_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
