"""A price book file (YAML or JSON) for ``policy-sidecar prices import``. Pure; no I/O
but reading the text it is given.

    prices:
      - model: gpt-4o-mini            # a deployed model's name
        input_price_per_mtok: 0.15    # USD per million tokens; null: unpriced, 0: free
        cached_input_price_per_mtok: 0.075
        output_price_per_mtok: 0.60

Every price is required in each entry (null is a value: unpriced), so an import never
leaves a price half-changed by omission. Unknown keys and duplicate models are errors
that name the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["PriceBookError", "PriceEntry", "parse_price_book"]


class PriceBookError(ValueError):
    """The file is not a valid price book; the message names the entry and field."""


@dataclass(frozen=True, slots=True)
class PriceEntry:
    model: str
    input_price_per_mtok: Decimal | None
    output_price_per_mtok: Decimal | None
    cached_input_price_per_mtok: Decimal | None


_Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] | None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)
    model: Annotated[str, Field(min_length=1)]
    input_price_per_mtok: _Price
    output_price_per_mtok: _Price
    cached_input_price_per_mtok: _Price


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prices: list[_Entry]


def parse_price_book(text: str, *, source: str) -> tuple[PriceEntry, ...]:
    """The entries of a price book (YAML, of which JSON is a subset)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceBookError(f"{source}: not YAML or JSON: {exc}") from exc
    try:
        book = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PriceBookError(f"{source}: {where}: {first['msg']}") from exc
    seen: set[str] = set()
    entries: list[PriceEntry] = []
    for i, entry in enumerate(book.prices):
        if entry.model in seen:
            raise PriceBookError(f"{source}: prices.{i}.model: duplicate model {entry.model!r}")
        seen.add(entry.model)
        entries.append(
            PriceEntry(
                model=entry.model,
                input_price_per_mtok=entry.input_price_per_mtok,
                output_price_per_mtok=entry.output_price_per_mtok,
                cached_input_price_per_mtok=entry.cached_input_price_per_mtok,
            )
        )
    return tuple(entries)
