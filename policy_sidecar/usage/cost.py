"""Fills in a record's ``cost_usd`` from live prices. Pure; no I/O.

The formula and the lookup are `policy_sidecar.catalog.pricing`'s, the same ones cost budgets
use. The ext_proc streams price each request once, before its post-checks; this is
the recorder's fallback for records that arrive unpriced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import CatalogPriceBook, PriceBook, cost_usd
from policy_sidecar.providers.base import Usage
from policy_sidecar.usage.record import UsageRecord

__all__ = ["Pricing", "record_usage"]


def record_usage(record: UsageRecord) -> Usage:
    return Usage(
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        total_tokens=record.total_tokens,
        cached_tokens=record.cached_tokens,
        reasoning_tokens=record.reasoning_tokens,
    )


class Pricing:
    """Prices records through a `PriceBook` (by default over a live catalogue mapping:
    the mapping is read at every call, never copied). A record whose model is unknown
    keeps ``cost_usd = None`` (unknown, not free). Safe to share."""

    def __init__(self, models: Mapping[str, ModelDeployment] | PriceBook) -> None:
        self.book: PriceBook = CatalogPriceBook(models) if isinstance(models, Mapping) else models

    def cost(self, record: UsageRecord) -> float | None:
        return self.book.cost(record_usage(record), record.requested_model, record.served_model)

    def apply(self, record: UsageRecord) -> UsageRecord:
        """`record` with `cost_usd` (and the price version it was computed with) set, or
        unchanged when it has a cost or no price is known."""
        if record.cost_usd is not None:
            return record
        deployment = self.book.deployment(record.requested_model, record.served_model)
        cost = None if deployment is None else cost_usd(record_usage(record), deployment)
        if deployment is None or cost is None:
            return record
        return replace(record, cost_usd=cost, price_version=deployment.price_version)
