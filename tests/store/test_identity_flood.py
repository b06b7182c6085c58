"""A flood of random API keys against the real Postgres-backed resolver: the store
sees a bounded number of queries, valid keys keep working, new keys take effect."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from policy_sidecar.identity.resolver import IdentityLookupThrottled
from policy_sidecar.store.identity_cache import CachedIdentityResolver
from policy_sidecar.store.postgres import ApiKeyRepository, ApplicationRepository, Pool
from policy_sidecar.store.records import KeyIdentity
from tests.conftest import FakeClock
from tests.store.conftest import dsn, pool, schema_dsn  # noqa: F401  (fixtures)

pytestmark = pytest.mark.postgres

FLOOD = 2_000
BURST = 20


class CountingKeys:
    """The real repository, counting the lookups that reach Postgres."""

    def __init__(self, repo: ApiKeyRepository) -> None:
        self.repo = repo
        self.queries = 0

    async def resolve(self, key_hash: str) -> KeyIdentity | None:
        self.queries += 1
        return await self.repo.resolve(key_hash)


async def _setup(pool: Pool) -> tuple[CountingKeys, str, str]:  # noqa: F811
    app = await ApplicationRepository(pool).create(org_id="acme", name="flood")
    keys = ApiKeyRepository(pool)
    first = await keys.create(app_id=app.id, environment="production")
    second = await keys.create(app_id=app.id, environment="production")
    return CountingKeys(keys), first.secret, second.secret


def _resolver(keys: CountingKeys, clock: FakeClock) -> CachedIdentityResolver:
    return CachedIdentityResolver(
        keys.resolve,
        keys.repo.record_last_used,
        ttl=60,
        negative_ttl=5,
        max_negative=500,
        lookup_rate=10,
        lookup_burst=BURST,
        clock=clock,
    )


async def _flood(resolver: CachedIdentityResolver, n: int) -> tuple[int, int]:
    """(answered None, throttled) for n random keys, 50 at a time."""
    unknown = throttled = 0

    async def one() -> None:
        nonlocal unknown, throttled
        try:
            assert await resolver.resolve("ps_production_" + secrets.token_urlsafe(32)) is None
            unknown += 1
        except IdentityLookupThrottled:
            throttled += 1

    for _ in range(n // 50):
        await asyncio.gather(*(one() for _ in range(50)))
    return unknown, throttled


async def test_a_flood_of_random_keys_makes_a_bounded_number_of_store_queries(
    pool: Pool,  # noqa: F811
) -> None:
    keys, valid, never_seen = await _setup(pool)
    clock = FakeClock()
    resolver = _resolver(keys, clock)
    assert await resolver.resolve(valid) is not None
    assert keys.queries == 1
    unknown, throttled = await _flood(resolver, FLOOD)
    # At most the burst reached Postgres, the valid key's lookup included (the clock
    # does not move: no refill).
    assert keys.queries == BURST
    assert (unknown, throttled) == (BURST - 1, FLOOD - BURST + 1)
    # The valid key is cached and unaffected; after an invalidation (which drops every
    # cached answer) it still skips the exhausted budget: seen valid here before.
    assert await resolver.resolve(valid) is not None
    resolver.invalidate()
    assert await resolver.resolve(valid) is not None
    assert keys.queries == BURST + 1
    # A valid key this process has never seen waits for the budget: retryable, and it
    # works as soon as the budget refills (10 a second here).
    with pytest.raises(IdentityLookupThrottled):
        await resolver.resolve(never_seen)
    clock.advance(1)
    assert await resolver.resolve(never_seen) is not None
    await resolver.close()


async def test_a_repeated_bad_key_is_served_from_the_negative_cache(
    pool: Pool,  # noqa: F811
) -> None:
    keys, valid, _ = await _setup(pool)
    clock = FakeClock()
    resolver = _resolver(keys, clock)
    bad = "ps_production_" + secrets.token_urlsafe(32)
    assert await resolver.resolve(bad) is None
    for _ in range(500):
        assert await resolver.resolve(bad) is None
    assert keys.queries == 1
    # Concurrent lookups of one unknown key share one query.
    other = "ps_production_" + secrets.token_urlsafe(32)
    assert await asyncio.gather(*(resolver.resolve(other) for _ in range(50))) == [None] * 50
    assert keys.queries == 2
    # A flood larger than the negative cache churns only that cache: the valid key's
    # positive entry survives (no store query for it), and memory stays bounded.
    big = CachedIdentityResolver(
        keys.resolve, keys.repo.record_last_used, max_negative=500, lookup_burst=1000, clock=clock
    )
    assert await big.resolve(valid) is not None
    queries = keys.queries
    assert await _flood(big, 600) == (600, 0)  # 600 > max_negative (500)
    assert await big.resolve(valid) is not None
    assert keys.queries == queries + 600  # nothing for `valid`
    assert len(big._unknown) == 500
    await resolver.close()
    await big.close()


async def test_a_key_that_becomes_valid_after_a_negative_lookup_works_after_invalidation(
    pool: Pool,  # noqa: F811
) -> None:
    keys, _, _ = await _setup(pool)
    resolver = _resolver(keys, FakeClock())
    app = await ApplicationRepository(pool).create(org_id="acme", name="late")
    secret = "ps_production_" + secrets.token_urlsafe(32)
    assert await resolver.resolve(secret) is None  # unknown, cached negatively
    # The key appears in the store (as a created key would) ...
    from policy_sidecar.identity.resolver import hash_api_key

    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO api_keys (app_id, environment, prefix, key_hash)"
            " VALUES (%s, 'production', 'ps_production_', %s)",
            (app.id, hash_api_key(secret)),
        )
    assert await resolver.resolve(secret) is None  # still the negative answer
    # ... and the admin service's invalidation (api_key created) drops it at once.
    resolver.invalidate()
    found = await resolver.resolve(secret)
    assert found is not None and found.app_id == app.id
    await resolver.close()
