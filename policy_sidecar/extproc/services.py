"""Everything a stream processor depends on, wired once by the CLI."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import PriceBook
from policy_sidecar.extproc.reservations import PendingReservations
from policy_sidecar.identity.resolver import IdentityResolver
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.policy.source import PolicySource
from policy_sidecar.providers.registry import ProviderRegistry
from policy_sidecar.tokens import TokenEstimator
from policy_sidecar.usage.record import UsageRecord

log = logging.getLogger(__name__)

UnknownPaths: TypeAlias = Literal["deny", "passthrough"]
Unpriced: TypeAlias = Literal["deny", "allow_and_report"]


class UsageRecorder(Protocol):
    """Takes a finished request's record. Never blocks and never raises."""

    def record(self, record: UsageRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class Services:
    identities: IdentityResolver
    policies: PolicySource
    enforcer: Enforcer
    providers: ProviderRegistry
    estimator: TokenEstimator
    recorder: UsageRecorder
    models: Mapping[str, ModelDeployment] = field(default_factory=dict)
    # A path that is neither a provider's metered endpoint nor a free route (listing
    # models): 404 (the default), or let it through unmetered.
    unknown_paths: UnknownPaths = "deny"
    # A deployed model without the price its route bills by: 403 ``model_unpriced``
    # (the default), or allowed and recorded with ``cost_usd`` None.
    unpriced: Unpriced = "deny"
    # Prices for usage records and post-checks; None: `CatalogPriceBook(models)`.
    prices: PriceBook | None = None
    # Ask OpenAI-style streams for their usage chunk so usage is always known.
    inject_stream_usage: bool = True
    clock: Callable[[], float] = time.time
    # This worker's name in the metadata (its port): Envoy writes the request's access
    # log line to this worker's file (docs/envoy.md, "Usage capture").
    worker: str | None = None
    tasks: BackgroundTasks = field(default_factory=lambda: BackgroundTasks())
    # Admitted requests' reservations until their access log line settles them.
    pending: PendingReservations = field(default_factory=lambda: PendingReservations())

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.spawn(coro)


class BackgroundTasks:
    """Work that outlives a stream (settling counters, post-checks); awaited on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
