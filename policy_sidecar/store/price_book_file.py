"""A price book file (YAML or JSON) for ``policy-sidecar prices import``. Pure; no I/O
but reading the text it is given.

    prices:
      - model: gpt-4o-mini            # a deployed model's name
        input_price_per_mtok: 0.15    # USD per million tokens; null: unpriced, 0: free
        cached_input_price_per_mtok: 0.075
        output_price_per_mtok: 0.60

      - model: dall-e-3               # routes of another unit (docs/providers.md)
        input_price_per_mtok: null
        cached_input_price_per_mtok: null
        output_price_per_mtok: null
        unit_price_usd: 0.04          # USD per image / character / second / search unit
        image_prices: {"1024x1024/hd": 0.08, "1792x1024/hd": 0.12}
      - model: claude-sonnet-4-5      # optional: cache-write premiums, long-context tier
        ...
        cache_write_5m_price_per_mtok: 3.75
        cache_write_1h_price_per_mtok: 6
        long_context_threshold_tokens: 200000
        long_context_input_price_per_mtok: 6
        long_context_output_price_per_mtok: 22.5

The three token prices are required in each entry (null is a value: unpriced), so an
import never leaves a price half-changed by omission; the other prices are optional and
an omitted one is null, since an entry is the model's whole price set. Unknown keys and
duplicate models are errors that name the entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    # Optional in the file; omitted is null (the entry is the model's whole price set).
    unit_price_usd: Decimal | None = None
    image_prices: Mapping[str, Decimal] = field(default_factory=dict)
    cache_write_5m_price_per_mtok: Decimal | None = None
    cache_write_1h_price_per_mtok: Decimal | None = None
    long_context_threshold_tokens: int | None = None
    long_context_input_price_per_mtok: Decimal | None = None
    long_context_cached_input_price_per_mtok: Decimal | None = None
    long_context_output_price_per_mtok: Decimal | None = None


_Decimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
_Price = _Decimal | None
# An image size and quality: "1024x1024/hd".
_ImageKey = Annotated[str, Field(pattern=r"^[0-9a-z]+x?[0-9]*/[a-z_]+$", max_length=64)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)
    model: Annotated[str, Field(min_length=1)]
    input_price_per_mtok: _Price
    output_price_per_mtok: _Price
    cached_input_price_per_mtok: _Price
    unit_price_usd: _Price = None
    image_prices: dict[_ImageKey, _Decimal] | None = None
    cache_write_5m_price_per_mtok: _Price = None
    cache_write_1h_price_per_mtok: _Price = None
    long_context_threshold_tokens: Annotated[int, Field(gt=0)] | None = None
    long_context_input_price_per_mtok: _Price = None
    long_context_cached_input_price_per_mtok: _Price = None
    long_context_output_price_per_mtok: _Price = None


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
                unit_price_usd=entry.unit_price_usd,
                image_prices=dict(entry.image_prices or {}),
                cache_write_5m_price_per_mtok=entry.cache_write_5m_price_per_mtok,
                cache_write_1h_price_per_mtok=entry.cache_write_1h_price_per_mtok,
                long_context_threshold_tokens=entry.long_context_threshold_tokens,
                long_context_input_price_per_mtok=entry.long_context_input_price_per_mtok,
                long_context_cached_input_price_per_mtok=entry.long_context_cached_input_price_per_mtok,
                long_context_output_price_per_mtok=entry.long_context_output_price_per_mtok,
            )
        )
    return tuple(entries)
