"""What each metered route bills by: its unit. Pure; no I/O.

Every metered ``(provider, operation)`` declares one unit here, and a usage record
carries it with the quantity billed in it (``UsageRecord.unit`` / ``quantity``; see
docs/providers.md, "Units"). Token limits apply to routes whose unit is ``tokens``;
cost limits apply to every route.

A route a provider module matches but this table does not declare is a programming
error a test catches (tests/providers/test_units.py): it would be recorded without a
unit, and no operator could tell it was metered.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["TOKENS", "UNITS", "Unit", "bills_tokens", "route_unit"]

Unit = Literal["tokens", "images", "characters", "seconds", "search_units", "requests"]

TOKENS: Final = "tokens"

#: Every unit a route may declare, for validation and the docs.
UNITS: Final[tuple[Unit, ...]] = (
    "tokens",
    "images",
    "characters",
    "seconds",
    "search_units",
    "requests",
)

#: (provider, operation) -> the unit the provider bills that route by.
ROUTE_UNITS: Final[dict[tuple[str, str], Unit]] = {
    ("openai", "chat"): "tokens",
    ("openai", "completions"): "tokens",
    ("openai", "embeddings"): "tokens",
    ("openai", "responses"): "tokens",
    ("azure", "chat"): "tokens",
    ("azure", "completions"): "tokens",
    ("azure", "embeddings"): "tokens",
    ("azure", "responses"): "tokens",
    ("anthropic", "messages"): "tokens",
    ("gemini", "generate"): "tokens",
    ("gemini", "embed"): "tokens",
    ("cohere", "chat"): "tokens",
    ("cohere", "embed"): "tokens",
}


def route_unit(provider: str | None, operation: str | None) -> Unit | None:
    """The unit of a metered route, or None for a request no metered route matched."""
    if provider is None or operation is None:
        return None
    return ROUTE_UNITS.get((provider, operation))


def bills_tokens(unit: Unit | None) -> bool:
    """Whether token limits apply: the route bills tokens (or is not known to bill
    anything else)."""
    return unit is None or unit == TOKENS
