"""Where the engine for a caller comes from: a protocol, and the static source."""

from __future__ import annotations

from typing import Protocol

from policy_sidecar.identity.resolver import Identity
from policy_sidecar.policy.engine import PolicyEngine


class PolicySource(Protocol):
    """Gives the policy engine that applies to a caller. Fast when warm (no I/O); may
    load (and cache) on a miss. Never returns stale policies longer than its cache TTL
    or past an invalidation it has received."""

    async def engine_for(self, identity: Identity) -> PolicyEngine: ...


class StaticPolicySource:
    """One engine for everyone: the standalone file's policies, fixed at start-up."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine

    async def engine_for(self, identity: Identity) -> PolicyEngine:
        return self.engine
