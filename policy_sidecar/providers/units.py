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

from dataclasses import replace
from typing import Final, Literal

from policy_sidecar.providers.base import Usage

__all__ = [
    "TOKENS",
    "UNITS",
    "Unit",
    "bills_tokens",
    "request_quantity",
    "route_unit",
]

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
    ("cohere", "rerank"): "search_units",
    ("gemini", "batch_embed"): "tokens",
    ("gemini", "count_tokens"): "requests",
    ("anthropic", "count_tokens"): "requests",
    ("openai", "images"): "images",
    ("openai", "image_edits"): "images",
    ("openai", "speech"): "characters",
    ("openai", "transcriptions"): "seconds",
    ("openai", "translations"): "seconds",
    ("openai", "moderations"): "requests",
}


def route_unit(provider: str | None, operation: str | None) -> Unit | None:
    """The unit of a metered route, or None for a request no metered route matched."""
    if provider is None or operation is None:
        return None
    return ROUTE_UNITS.get((provider, operation))


def bills_tokens(unit: str | None) -> bool:
    """Whether token limits apply: the route bills tokens (or is not known to bill
    anything else)."""
    return unit is None or unit == TOKENS


def request_quantity(
    usage: Usage | None,
    *,
    unit: Unit | None,
    quantity: float | None,
    estimated: bool,
    price_key: str | None,
    ok: bool,
) -> Usage | None:
    """The billed usage of a route of another unit than tokens: the response's quantity
    where it gave one, else the request's (characters of speech input, an upload's
    estimated seconds, flagged ``quantity_estimated``). A 2xx answer the parser could
    not read (audio bytes) is billed the request's quantity; an error answer nothing.
    Token routes pass through unchanged."""
    if unit is None or unit == TOKENS:
        return usage
    if usage is None:
        if not ok or quantity is None:
            return None
        usage = Usage()
    if usage.quantity is None:
        usage = replace(usage, quantity=quantity, quantity_estimated=estimated)
    return replace(usage, unit=unit, price_key=usage.price_key or price_key)
