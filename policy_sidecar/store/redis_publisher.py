"""Publishes committed configuration changes to Redis so every sidecar replica
drops its cached copy at once (the sidecar subscribes; see docs/admin.md).

Payload: one JSON object per change on channel `policy_sidecar:invalidate`:
`{"kind": ..., "action": ..., "id": ..., "org_id": ..., "app_id": ...,
"version": ..., "key_hash": ...}` (absent values are null).
"""

from __future__ import annotations

import json
from typing import Any, Final

from redis.asyncio import Redis

from policy_sidecar.store.invalidation import PolicyChange

__all__ = ["CHANNEL", "RedisPolicyChangePublisher", "decode_change", "encode_change"]

CHANNEL: Final = "policy_sidecar:invalidate"


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
    """PUBLISH to `channel`. Fire-and-forget by design: subscribers that are not
    connected miss the message and converge by their cache TTL."""

    def __init__(self, client: Redis, channel: str = CHANNEL) -> None:
        self._client = client
        self._channel = channel

    async def publish(self, change: PolicyChange) -> None:
        await self._client.publish(self._channel, encode_change(change))
