"""Penalties set by failed CEL post-checks: an application's requests deny until a time."""

from __future__ import annotations

from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from policy_sidecar.counters.types import CounterStoreUnavailable, counter_key


def penalty_key(org_id: str, app_id: str, environment: str) -> str:
    return counter_key("org", org_id, "penalty", app_id, environment)


class PenaltyBox(Protocol):
    """Per (org, app, environment): the time until which requests are refused."""

    async def until(self, key: str, now: float) -> float | None:
        """When the active penalty ends, or None. Raises CounterStoreUnavailable."""
        ...

    async def impose(self, key: str, seconds: int, now: float) -> None: ...


class InMemoryPenaltyBox:
    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    async def until(self, key: str, now: float) -> float | None:
        end = self._until.get(key)
        if end is None or end <= now:
            self._until.pop(key, None)
            return None
        return end

    async def impose(self, key: str, seconds: int, now: float) -> None:
        self._until[key] = max(self._until.get(key, 0.0), now + seconds)


class RedisPenaltyBox:
    """One key per penalised caller holding the end time, expiring with it."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def until(self, key: str, now: float) -> float | None:
        try:
            raw = await self._client.get(key)
        except (RedisError, OSError) as exc:
            raise CounterStoreUnavailable(f"redis unavailable: {exc}") from exc
        if raw is None:
            return None
        end = float(raw)
        return end if end > now else None

    async def impose(self, key: str, seconds: int, now: float) -> None:
        try:
            await self._client.set(key, repr(now + seconds), px=seconds * 1000)
        except (RedisError, OSError) as exc:
            raise CounterStoreUnavailable(f"redis unavailable: {exc}") from exc
