"""Everything a stream processor depends on, wired once by the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from policy_sidecar.catalog import ModelDeployment
from policy_sidecar.identity import IdentityResolver
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.providers.registry import ProviderRegistry
from policy_sidecar.tokens import TokenEstimator
from policy_sidecar.usage.record import UsageRecord


class UsageRecorder(Protocol):
    """Takes a finished request's record. Never blocks and never raises."""

    def record(self, record: UsageRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class Services:
    identities: IdentityResolver
    policies: PolicyEngine
    providers: ProviderRegistry
    estimator: TokenEstimator
    recorder: UsageRecorder
    models: Mapping[str, ModelDeployment] = field(default_factory=dict)
    # What to do with a path no provider recognises: let it through unmetered, or 404.
    unknown_paths: Literal["passthrough", "deny"] = "passthrough"
    # Ask OpenAI-style streams for their usage chunk so usage is always known.
    inject_stream_usage: bool = True
    clock: Callable[[], float] = time.time
