"""Publishes committed configuration changes to Redis so every sidecar replica
drops its cached copy at once (the sidecar subscribes; see docs/admin.md).

Payload: one JSON object per change on channel `policy_sidecar:invalidate`:
`{"kind": ..., "action": ..., "id": ..., "org_id": ..., "app_id": ...,
"version": ..., "key_hash": ...}` (absent values are null).

A publish that fails (Redis restarting, a stale pooled connection) is retried in
the background by a small bounded loop, not by stacking more retries on the client:
the admin write has committed and must not wait or fail, and the retry must outlast
a Redis restart (seconds), which the client's own per-command retry (milliseconds
to about a second of backoff) does not. Pending changes are kept in order, at most
`max_pending`, for at most `retry_for` seconds; one that still fails is logged and
counted (`failed`), and sidecars then converge by their cache TTLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Literal

from redis.exceptions import RedisClusterException, RedisError

from policy_sidecar.redis_clients import RedisClient
from policy_sidecar.store.invalidation import PolicyChange

__all__ = [
    "CHANNEL",
    "PublishResult",
    "RedisPolicyChangePublisher",
    "decode_change",
    "encode_change",
]

CHANNEL: Final = "policy_sidecar:invalidate"
log = logging.getLogger(__name__)
#: What became of one change: published at once, published after retrying, given up.
PublishResult = Literal["published", "retried", "failed"]


def encode_change(change: PolicyChange) -> str:
    return json.dumps(
        {
            "kind": change.kind,
            "action": change.action,
            "id": change.id,
            "org_id": change.org_id,
            "app_id": change.app_id,
            "version": change.version,
            # sha256 of an API key (not the key): what the sidecar's identity cache is keyed by.
            "key_hash": change.key_hash,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def decode_change(payload: str | bytes) -> PolicyChange:
    """For subscribers: the change in a payload; raises ValueError if malformed."""
    data: Any = json.loads(payload)
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ValueError("invalidation payload must be an object with a string id")
    return PolicyChange(
        kind=data["kind"],
        action=data["action"],
        id=data["id"],
        org_id=data.get("org_id"),
        app_id=data.get("app_id"),
        version=data.get("version"),
        key_hash=data.get("key_hash"),
    )


class RedisPolicyChangePublisher:
    """PUBLISH to `channel`; a failed publish is retried in the background (see the
    module docstring), so `publish` never raises and never waits for long. Subscribers
    not connected at that moment miss the message and re-validate when they
    reconnect (see production/listener.py). One per process; call `close` at exit."""

    def __init__(
        self,
        client: RedisClient,
        channel: str = CHANNEL,
        *,
        retry_for: float = 30.0,
        max_pending: int = 1000,
        first_delay: float = 0.1,
        max_delay: float = 2.0,
        on_result: Callable[[PublishResult], None] | None = None,
    ) -> None:
        self._client = client
        self._channel = channel
        self._retry_for = retry_for
        self._first_delay = first_delay
        self._max_delay = max_delay
        self._on_result = on_result or (lambda _result: None)
        self._pending: deque[PolicyChange] = deque()
        self._max_pending = max_pending
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Changes waiting for a retry."""
        return len(self._pending)

    async def publish(self, change: PolicyChange) -> None:
        if not self._pending:
            try:
                await self._client.publish(self._channel, encode_change(change))
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("invalidation publish failed (%s); retrying in the background", exc)
            else:
                self._on_result("published")
                return
        # Behind earlier pending changes: keep the order.
        if len(self._pending) >= self._max_pending:
            self._give_up(self._pending.popleft(), "too many pending")
        self._pending.append(change)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="invalidation-retry")

    async def close(self) -> None:
        """Stop retrying; changes still pending are logged and counted as failed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            self._give_up(self._pending.popleft(), "shutting down")

    async def _retry(self) -> None:
        deadline = time.monotonic() + self._retry_for
        delay = self._first_delay
        while self._pending:
            await asyncio.sleep(delay)
            try:
                while self._pending:
                    await self._client.publish(self._channel, encode_change(self._pending[0]))
                    self._pending.popleft()
                    self._on_result("retried")
                    deadline = time.monotonic() + self._retry_for
            except (RedisError, RedisClusterException, OSError) as exc:
                if time.monotonic() >= deadline:
                    while self._pending:
                        self._give_up(self._pending.popleft(), str(exc))
                    return
                delay = min(delay * 2, self._max_delay)

    def _give_up(self, change: PolicyChange, reason: str) -> None:
        log.error(
            "invalidation for %s %s %s not published (%s): sidecars converge by cache TTL",
            change.kind,
            change.action,
            change.id,
            reason,
        )
        self._on_result("failed")
