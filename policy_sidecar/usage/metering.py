"""Stamps a usage record with its route's billing unit and quantity. Pure; no I/O.

Applied by the recorder to every record it is given (allowed, denied, failed, Envoy's
own errors), so no record builder can forget it. A record that already carries a unit
(a route whose parser reported a non-token quantity) is kept as it is.
"""

from __future__ import annotations

from typing import Any

from policy_sidecar.providers.units import TOKENS, route_unit
from policy_sidecar.usage.record import UsageRecord, with_changes

__all__ = ["metered", "metering", "metering_of"]


def metered(record: UsageRecord) -> UsageRecord:
    """`record` with ``unit`` from its route and, for token routes, ``quantity`` = the
    billed total tokens; unchanged when it has a unit or no metered route matched."""
    changes = metering(record)
    return with_changes(record, **changes) if changes else record


def metering(record: UsageRecord) -> dict[str, Any]:
    """The fields `metered` would change (none: it keeps the record). For a builder that
    copies the record anyway: one ``replace`` instead of two (each costs as much as
    building the record)."""
    return metering_of(
        record.unit, record.quantity, record.provider, record.operation, record.total_tokens
    )


def metering_of(
    unit: str | None,
    quantity: float,
    provider: str | None,
    operation: str | None,
    total_tokens: int,
) -> dict[str, Any]:
    """`metering` of a record with these fields, for a builder that has not built it yet
    (`extproc.facts.usage_record`)."""
    if unit is not None:
        return {}
    unit = route_unit(provider, operation)
    if unit is None:
        return {}
    return {"unit": unit, "quantity": float(max(total_tokens, 0)) if unit == TOKENS else quantity}
