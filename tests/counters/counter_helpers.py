"""Helpers shared by the counter tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore

KeyFactory = Callable[..., str]


async def bucket_ttl(store: CounterStore, bucket: str, now: float) -> float:
    """Seconds until a bucket key expires, whichever store holds it."""
    if isinstance(store, InMemoryCounterStore):
        ttl = store.ttl(bucket, now)
        assert ttl is not None, f"{bucket} missing"
        return ttl
    assert isinstance(store, RedisCounterStore)
    pttl = await store.client.pttl(bucket)
    assert pttl > 0, f"{bucket} has no expiry ({pttl})"
    return float(pttl) / 1000


def patient_redis_store(
    url: str, *, max_connections: int = 64, client_name: str | None = None
) -> RedisCounterStore:
    """A store with generous timeouts: a loaded CI machine must not turn into failures."""
    return RedisCounterStore.from_url(
        url,
        socket_timeout=5.0,
        connect_timeout=5.0,
        max_connections=max_connections,
        client_name=client_name,
    )
