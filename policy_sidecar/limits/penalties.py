"""Penalties set by failed CEL post-checks: an application's requests deny until a time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from policy_sidecar.counters.values import CounterStoreUnavailable, counter_key
from policy_sidecar.redis_clients import RedisClient, ready, single_command

# Any failure to reach Redis (on a cluster also: no node reachable, a slot not served).
_UNAVAILABLE = (RedisError, RedisClusterException, OSError)


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


# Keep the later end atomically: a read-then-write from Python would let two replicas
# (or two requests on one loop) imposing at once overwrite a longer penalty with a
# shorter one. A value without braces is an end time written by an older version.
_IMPOSE = """
local current = redis.call('GET', KEYS[1])
if current then
  local ends
  if string.sub(current, 1, 1) == '{' then
    ends = tonumber(cjson.decode(current)['until'])
  else
    ends = tonumber(current)
  end
  if ends and ends >= tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


class RedisPenaltyBox:
    """One key per penalised caller holding the end time, expiring with it (one key per
    call: fine on a Redis Cluster)."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._impose = client.register_script(_IMPOSE)

    async def until(self, key: str, now: float) -> Penalty | None:
        client = self._client
        try:
            if isinstance(client, RedisCluster):
                raw = await (await ready(client)).get(key)
            else:  # once per admitted request: the lean path (`single_command`)
                raw = await single_command(client, "GET", key)
        except _UNAVAILABLE as exc:
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
            await ready(self._client)
            await self._impose(keys=[key], args=[value, repr(penalty.until), ttl_ms])
        except _UNAVAILABLE as exc:
            raise CounterStoreUnavailable(f"redis unavailable: {exc}") from exc


def _decode(raw: bytes | str) -> Penalty:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if not text.startswith("{"):  # written by a version that stored only the end time
        return Penalty(float(text), "", "")
    data = json.loads(text)
    return Penalty(float(data["until"]), str(data["policy_id"]), str(data["name"]))
