"""Builds the production-mode components from settings (Postgres + Redis)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.redis_clients import RedisClient, open_redis
from policy_sidecar.store.account_catalog import AccountCatalog, FallbackGroupCatalog
from policy_sidecar.store.identity_cache import CachedIdentityResolver
from policy_sidecar.store.listener import InvalidationListener
from policy_sidecar.store.model_catalog import ModelCatalog
from policy_sidecar.store.policy_cache import CachedPolicySource
from policy_sidecar.store.postgres import (
    AccountRepository,
    ApiKeyRepository,
    ModelRepository,
    PolicyRepository,
    Pool,
    UsageRepository,
    open_pool,
)
from policy_sidecar.store.postgres.fallback_groups import FallbackGroupRepository
from policy_sidecar.store.postgres.usage_sink import PostgresUsageSink
from policy_sidecar.store.records import Page

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Production:
    pool: Pool
    redis: RedisClient | None
    identities: CachedIdentityResolver
    policies: CachedPolicySource
    models: ModelCatalog
    usage_sink: PostgresUsageSink
    listener: InvalidationListener | None
    accounts: AccountCatalog
    groups: FallbackGroupCatalog
    # Called after the accounts or groups were reloaded (the CDS writer, on the first
    # worker).
    on_accounts: (
        Callable[[Iterable[ProviderAccount], Iterable[FallbackGroup]], Awaitable[None]] | None
    ) = None

    async def on_change(self, kind: str) -> None:
        loaded = False
        if kind in ("provider_account", "*"):
            loaded = await self.accounts.refresh()
        if kind in ("provider_account", "fallback_group", "*"):
            # A group's cluster depends on its accounts' too.
            loaded = await self.groups.refresh() or loaded
        if loaded and self.on_accounts is not None:
            await self.on_accounts(self.accounts.values(), self.groups.groups)
        if kind in ("policy", "*"):
            await self.policies.invalidate()
        if kind in ("api_key", "application", "application_config", "*"):
            self.identities.invalidate()
        if kind in ("model", "*"):
            await self.models.refresh()

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        await self.identities.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.pool.close()


async def _all_pages(
    list_page: Callable[[str | None], Awaitable[Page[T]]],
) -> list[T]:
    """Every item of a keyset-paginated listing."""
    out: list[T] = []
    token: str | None = None
    while True:
        page = await list_page(token)
        out.extend(page.items)
        token = page.next_page_token
        if token is None:
            return out


async def open_production(
    database_url: str,
    redis_url: str | None,
    *,
    cel_engine: str = "cel-expr",
    pool_size: int = 4,
    policy_cache_seconds: float = 5.0,
    identity_cache_seconds: float = 30.0,
) -> Production:
    pool = await open_pool(database_url, max_size=pool_size)
    redis = open_redis(redis_url) if redis_url else None
    if redis is None:
        log.warning("no Redis: policy and key changes apply within the cache TTLs, not at once")
    keys = ApiKeyRepository(pool)
    policies_repo = PolicyRepository(pool)
    models_repo = ModelRepository(pool)
    accounts_repo = AccountRepository(pool)
    groups_repo = FallbackGroupRepository(pool)
    production = Production(
        pool=pool,
        redis=redis,
        identities=CachedIdentityResolver(
            keys.resolve, keys.record_last_used, ttl=identity_cache_seconds
        ),
        policies=CachedPolicySource(
            lambda: _all_pages(
                lambda token: policies_repo.list(enabled=True, page_size=500, page_token=token)
            ),
            redis,
            cel_engine="cel-python" if cel_engine == "cel-python" else "cel-expr",
            # One policy copy per database: two deployments may share a Redis.
            namespace=hashlib.sha256(database_url.encode()).hexdigest()[:16],
            local_ttl=policy_cache_seconds,
        ),
        models=ModelCatalog(
            lambda: _all_pages(lambda token: models_repo.list(page_size=500, page_token=token))
        ),
        usage_sink=PostgresUsageSink(UsageRepository(pool)),
        listener=None,
        accounts=AccountCatalog(
            lambda: _all_pages(lambda token: accounts_repo.list(page_size=500, page_token=token))
        ),
        groups=FallbackGroupCatalog(
            lambda: _all_pages(lambda token: groups_repo.list(page_size=500, page_token=token))
        ),
    )
    await production.models.refresh()
    await production.accounts.refresh()
    await production.groups.refresh()
    production.identities.start()
    if redis is not None:
        production.listener = InvalidationListener(redis, production.on_change)
        production.listener.start()
    return production
