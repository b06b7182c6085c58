"""Cache-through policy source: in-process engine (seconds) → Redis copy (minutes) →
the store (Postgres). Invalidations drop both layers so a change applies at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisClusterException, RedisError

from policy_sidecar.identity.resolver import Identity
from policy_sidecar.observability.metrics import CACHE_REQUESTS, STORE_ERRORS
from policy_sidecar.policy.cel import EngineName
from policy_sidecar.policy.definition import CONFIG_TYPES, PolicyDefinition, Scope
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.redis_clients import RedisClient
from policy_sidecar.store.records import Policy

log = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "ps:policies:"


def definition_from(row: Mapping[str, Any]) -> PolicyDefinition | None:
    """A stored policy row as the engine's typed definition; None (and a log line) if
    its config no longer validates, so one bad row cannot take the others down."""
    config_type = CONFIG_TYPES.get(row["type"])
    if config_type is None:
        log.error("policy %s has unknown type %r: ignored", row["id"], row["type"])
        return None
    try:
        config = config_type.model_validate(row["config"])
    except ValidationError as exc:
        log.error("policy %s has an invalid config, ignored: %s", row["id"], exc)
        return None
    return PolicyDefinition(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        config=config,  # type: ignore[arg-type]  # CONFIG_TYPES holds PolicyConfig types
        scope=Scope(row["org_id"], row["app_id"], row["environment"], row["model_pattern"]),
        mode=row["mode"],
        priority=row["priority"],
        enabled=row["enabled"],
    )


def _rows(policies: Sequence[Policy]) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "name": p.name,
            "type": p.type,
            "org_id": p.org_id,
            "app_id": p.app_id,
            "environment": p.environment,
            "model_pattern": p.model_pattern,
            "mode": p.mode,
            "priority": p.priority,
            "enabled": p.enabled,
            "config": p.config,
        }
        for p in policies
    ]


class CachedPolicySource:
    """One engine over all enabled policies (the engine picks per caller and caches
    that). Safe for concurrent use on one event loop; one refresh at a time."""

    def __init__(
        self,
        load: Callable[[], Awaitable[Sequence[Policy]]],
        redis: RedisClient | None,
        *,
        local_ttl: float = 5.0,
        redis_ttl: int = 300,
        cel_engine: EngineName = "cel-expr",
        clock: Callable[[], float] = time.time,
        namespace: str = "default",
    ) -> None:
        # Deployments sharing one Redis keep their copies apart.
        self._redis_key = REDIS_KEY_PREFIX + namespace
        self._load = load
        self._redis = redis
        self._local_ttl = local_ttl
        self._redis_ttl = redis_ttl
        self._cel_engine = cel_engine
        self._clock = clock
        self._engine: PolicyEngine | None = None
        self._fingerprint = ""
        self._expires = 0.0
        # Redis copies written before the last invalidation are not trusted.
        self._not_before = 0.0
        # Bumped by every invalidation: a refresh that an invalidation overtook does not
        # mark its (older) answer fresh, so the next request loads again.
        self._generation = 0
        self._lock = asyncio.Lock()
        self.loads_from_store = 0

    async def engine_for(self, identity: Identity) -> PolicyEngine:
        engine = self._engine
        if engine is not None and self._clock() < self._expires:
            CACHE_REQUESTS.labels("policies", "hit").inc()
            return engine
        async with self._lock:
            if self._engine is None or self._clock() >= self._expires:
                await self._refresh()
        assert self._engine is not None
        return self._engine

    async def invalidate(self) -> None:
        """Forget both cached layers; the next request reloads from the store."""
        self._expires = 0.0
        self._not_before = self._clock()
        self._generation += 1
        if self._redis is not None:
            try:
                await self._redis.delete(self._redis_key)
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("could not drop the Redis policy copy: %s", exc)

    async def _refresh(self) -> None:
        generation = self._generation
        rows = await self._from_redis()
        if rows is None:
            loaded_at = self._clock()
            try:
                rows = _rows(await self._load())
            except Exception:
                STORE_ERRORS.labels("policies").inc()
                if self._engine is None:
                    raise
                # Keep enforcing the last good policies; try again shortly.
                log.exception("could not load policies; keeping the cached ones")
                self._expires = self._clock() + min(self._local_ttl, 1.0)
                return
            self.loads_from_store += 1
            CACHE_REQUESTS.labels("policies", "store").inc()
            await self._to_redis(rows, loaded_at)
        else:
            CACHE_REQUESTS.labels("policies", "redis").inc()
        fingerprint = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
        if fingerprint != self._fingerprint or self._engine is None:
            definitions = [d for d in map(definition_from, rows) if d is not None]
            self._engine = PolicyEngine(definitions, cel_engine=self._cel_engine)
            self._fingerprint = fingerprint
        # Overtaken by an invalidation: used by whoever waited for it, fresh for no one.
        fresh = generation == self._generation
        self._expires = self._clock() + self._local_ttl if fresh else 0.0

    async def _from_redis(self) -> list[dict[str, Any]] | None:
        if self._redis is None:
            return None
        try:
            raw = await self._redis.get(self._redis_key)
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("Redis policy copy unavailable, reading the store: %s", exc)
            return None
        if raw is None:
            return None
        try:
            copy = json.loads(raw)
            if float(copy["loaded_at"]) < self._not_before:
                return None
            rows: list[dict[str, Any]] = copy["policies"]
        except (ValueError, KeyError, TypeError):
            return None
        return rows

    async def _to_redis(self, rows: list[dict[str, Any]], loaded_at: float) -> None:
        if self._redis is None:
            return
        payload = json.dumps({"loaded_at": loaded_at, "policies": rows})
        try:
            await self._redis.set(self._redis_key, payload, ex=self._redis_ttl)
        except (RedisError, RedisClusterException, OSError) as exc:
            log.warning("could not write the Redis policy copy: %s", exc)
