"""Cache invalidation published by writes to policies, applications and API keys.

The policy cache (in-process and Redis) implements `PolicyChangePublisher`; the
repositories only know this interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["ChangeAction", "ChangeKind", "NoopPublisher", "PolicyChange", "PolicyChangePublisher"]

ChangeKind = Literal[
    "policy",
    "application",
    "application_config",
    "api_key",
    "model",
    "provider_account",
    "fallback_group",
]
ChangeAction = Literal["created", "updated", "deleted"]


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """One committed write that may make cached policy or identity data stale."""

    kind: ChangeKind
    action: ChangeAction
    id: str
    org_id: str | None = None
    app_id: str | None = None
    version: int | None = None
    # For api_key changes: the hash the sidecar caches identities under.
    key_hash: str | None = None


class PolicyChangePublisher(Protocol):
    """Publishes changes after their transaction commits.

    Called once per committed write, in commit order per repository call. An
    implementation should not block for long; a raised exception is logged by the
    caller and does not undo the (already committed) write, so caches converge
    at the latest when their TTL expires.
    """

    async def publish(self, change: PolicyChange) -> None: ...


class NoopPublisher:
    """Publishes nowhere: for standalone mode and tests."""

    async def publish(self, change: PolicyChange) -> None:
        return None
