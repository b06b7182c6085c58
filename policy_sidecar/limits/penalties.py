"""Penalties set by failed CEL post-checks: an application's requests deny until a time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from policy_sidecar.counters.values import CounterStoreUnavailable, counter_key


def penalty_key(org_id: str, app_id: str, environment: str) -> str:
    return counter_key("org", org_id, "penalty", app_id, environment)


@dataclass(frozen=True, slots=True)
class Penalty:
    """An active penalty: until when, and the post-check policy that imposed it."""

    until: float
    policy_id: str
    policy_name: str


class PenaltyBox(Protocol):
    """Per (org, app, environment): the time until which requests are refused, and
    which policy imposed it. A later penalty that ends sooner never shortens one."""

    async def until(self, key: str, now: float) -> Penalty | None:
        """The active penalty, or None. Raises CounterStoreUnavailable."""
        ...

    async def impose(self, key: str, penalty: Penalty, now: float) -> None: ...


class InMemoryPenaltyBox:
    def __init__(self) -> None:
        self._active: dict[str, Penalty] = {}

    async def until(self, key: str, now: float) -> Penalty | None:
        penalty = self._active.get(key)
        if penalty is None or penalty.until <= now:
            self._active.pop(key, None)
            return None
        return penalty

    async def impose(self, key: str, penalty: Penalty, now: float) -> None:
        current = self._active.get(key)
        if current is None or current.until < penalty.until:
            self._active[key] = penalty


class RedisPenaltyBox:
    """One key per penalised caller holding the end time, expiring with it."""

    def __init__(self, client: Redis) -> None:
        self._client = client

    async def until(self, key: str, now: float) -> Penalty | None:
        try:
            raw = await self._client.get(key)
        except (RedisError, OSError) as exc:
            raise CounterStoreUnavailable(f"redis unavailable: {exc}") from exc
        if raw is None:
            return None
        penalty = _decode(raw)
        return penalty if penalty.until > now else None

    async def impose(self, key: str, penalty: Penalty, now: float) -> None:
        value = json.dumps(
            {"until": penalty.until, "policy_id": penalty.policy_id, "name": penalty.policy_name}
        )
        ttl_ms = max(1, int((penalty.until - now) * 1000))
        try:
            current = await self._client.get(key)
            if current is not None and _decode(current).until >= penalty.until:
                return
            await self._client.set(key, value, px=ttl_ms)
        except (RedisError, OSError) as exc:
            raise CounterStoreUnavailable(f"redis unavailable: {exc}") from exc


def _decode(raw: bytes | str) -> Penalty:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not text.startswith("{"):  # written by a version that stored only the end time
        return Penalty(float(text), "", "")
    data = json.loads(text)
    return Penalty(float(data["until"]), str(data["policy_id"]), str(data["name"]))
