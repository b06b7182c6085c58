"""One way to print US dollars in messages and headers: plain decimals, never an
exponent (`$0.00005`, not `5e-05`)."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["format_usd", "usd_decimal"]


def usd_decimal(amount: float | Decimal) -> str:
    """``0.00005``, ``25``, ``1.5``: the shortest exact decimal of the amount."""
    value = amount if isinstance(amount, Decimal) else Decimal(repr(float(amount)))
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def format_usd(amount: float | Decimal) -> str:
    """``$0.00005``; negative amounts as ``-$1.5``."""
    text = usd_decimal(amount)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"
