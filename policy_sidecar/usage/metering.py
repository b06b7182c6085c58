"""Stamps a usage record with its route's billing unit and quantity. Pure; no I/O.

Applied by the recorder to every record it is given (allowed, denied, failed, Envoy's
own errors), so no record builder can forget it. A record that already carries a unit
(a route whose parser reported a non-token quantity) is kept as it is.
"""

from __future__ import annotations

from dataclasses import replace

from policy_sidecar.providers.units import TOKENS, route_unit
from policy_sidecar.usage.record import UsageRecord

__all__ = ["metered"]


def metered(record: UsageRecord) -> UsageRecord:
    """`record` with ``unit`` from its route and, for token routes, ``quantity`` = the
    billed total tokens; unchanged when it has a unit or no metered route matched."""
    if record.unit is not None:
        return record
    unit = route_unit(record.provider, record.operation)
    if unit is None:
        return record
    quantity = float(max(record.total_tokens, 0)) if unit == TOKENS else record.quantity
    return replace(record, unit=unit, quantity=quantity)
