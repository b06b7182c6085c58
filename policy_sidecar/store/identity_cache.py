"""Cache-through identity resolution: API key hash → identity, from Postgres, cached
in-process; keeps ``last_used_at`` roughly current without a write per request.

Protection against floods of random keys (each one a store query otherwise):

- unknown keys are remembered ``negative_ttl`` seconds in an LRU of their own, so a
  flood churns only that LRU, never the valid keys' cache, and memory stays bounded;
- concurrent lookups of one key share one store query;
- store lookups for keys not in any cache spend a per-process token bucket
  (``lookup_rate`` a second, bursts of ``lookup_burst``); past it the request is
  refused with `IdentityLookupThrottled` (a retryable 503, since the key may be
  valid), counted as ``cache_requests{cache="identities",result="throttled"}``.
  Keys that resolved as valid on this process before (even if their entry was since
  invalidated or expired) skip the bucket, so a flood cannot lock out the
  applications already using this sidecar; only a key this process has never seen
  valid can get a 503 during a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from policy_sidecar.identity.resolver import Identity, IdentityLookupThrottled, hash_api_key
from policy_sidecar.observability.metrics import CACHE_REQUESTS, STORE_ERRORS
from policy_sidecar.store.lookup_budget import LookupBudget
from policy_sidecar.store.records import KeyIdentity

log = logging.getLogger(__name__)
V = TypeVar("V")


def _bounded_put(cache: OrderedDict[str, V], key: str, value: V, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


class CachedIdentityResolver:
    """Positive answers live ``ttl`` seconds (at most ``max_entries``), negative ones
    ``negative_ttl`` (at most ``max_negative``); least recently used dropped first. A
    key created or revoked in the admin service takes effect at once through
    ``invalidate`` (published on Redis), at the latest after the TTL. One per process;
    not thread-safe (one event loop)."""

    def __init__(
        self,
        resolve: Callable[[str], Awaitable[KeyIdentity | None]],
        record_last_used: Callable[[Mapping[str, datetime]], Awaitable[int]],
        *,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        max_entries: int = 100_000,
        max_negative: int = 10_000,
        lookup_rate: float = 50.0,
        lookup_burst: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._resolve = resolve
        self._record_last_used = record_last_used
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._max_negative = max_negative
        self._clock = clock
        self._budget = LookupBudget(rate=lookup_rate, burst=lookup_burst, clock=clock)
        self._known: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        # Digests that resolved valid here before: their lookups skip the budget.
        self._trusted: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[Identity | None]] = {}
        # Bumped by invalidate: a lookup started before it must not refill the cache.
        self._generation = 0
        self._seen: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    async def resolve(self, api_key: str) -> Identity | None:
        digest = hash_api_key(api_key)
        now = self._clock()
        hit = self._known.get(digest)
        if hit is not None and hit[0] > now:
            self._known.move_to_end(digest)
            identity: Identity | None = hit[1]
            CACHE_REQUESTS.labels("identities", "hit").inc()
        elif self._unknown.get(digest, 0.0) > now:
            self._unknown.move_to_end(digest)
            CACHE_REQUESTS.labels("identities", "negative_hit").inc()
            return None
        else:
            identity = await self._lookup(digest)
        if identity is not None:
            self._seen[identity.key_id] = datetime.fromtimestamp(now, UTC)
        return identity

    async def _lookup(self, digest: str) -> Identity | None:
        task = self._inflight.get(digest)
        if task is None:
            if digest not in self._trusted and not self._budget.take():
                CACHE_REQUESTS.labels("identities", "throttled").inc()
                raise IdentityLookupThrottled
            CACHE_REQUESTS.labels("identities", "miss").inc()
            fetch = self._fetch(digest, self._generation)
            task = asyncio.create_task(fetch, name="identity-lookup")
            self._inflight[digest] = task
            task.add_done_callback(lambda done: self._lookup_done(digest, done))
        else:
            CACHE_REQUESTS.labels("identities", "shared").inc()
        # Shielded: a caller that goes away does not cancel the others' lookup.
        return await asyncio.shield(task)

    def _lookup_done(self, digest: str, task: asyncio.Task[Identity | None]) -> None:
        if self._inflight.get(digest) is task:
            del self._inflight[digest]
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone away

    async def _fetch(self, digest: str, generation: int) -> Identity | None:
        try:
            found = await self._resolve(digest)
        except Exception:
            STORE_ERRORS.labels("identities").inc()
            raise
        now = self._clock()
        if found is None:
            self._trusted.pop(digest, None)
            if generation == self._generation:
                _bounded_put(self._unknown, digest, now + self._negative_ttl, self._max_negative)
            return None
        identity = Identity(
            found.app_id,
            found.org_id,
            found.environment,
            found.key_id,
            found.environment_enabled,
        )
        _bounded_put(self._trusted, digest, None, self._max)
        expires = now + self._ttl
        if found.expires_at is not None:
            expires = min(expires, found.expires_at.timestamp())
        if generation == self._generation:
            _bounded_put(self._known, digest, (expires, identity), self._max)
        return identity

    def invalidate(self) -> None:
        """Forget every cached answer, positive and negative (a key was created,
        revoked, or its application or config changed)."""
        self._generation += 1
        self._known.clear()
        self._unknown.clear()
        # A lookup already under way may predate the change: later callers start anew.
        self._inflight.clear()

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
