"""Value types shared by every counter store: operations, windows, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import quote

__all__ = [
    "MAX_COUNTER_VALUE",
    "Adjustment",
    "CheckResult",
    "CounterOp",
    "CounterState",
    "CounterStoreUnavailable",
    "Reservation",
    "ReservedAmount",
    "Window",
    "WindowUnit",
    "counter_key",
]

KEY_PREFIX = "ps"

#: No counter bucket holds more than this (1e15: tokens, requests or micro-USD far past
#: any limit) nor less than 0, whatever amounts and deltas are passed in: a bogus huge
#: or negative number cannot overflow a bucket (Redis INCRBY errors past 2**63) or
#: lower it for everybody. Exact as a double, so the Redis script's arithmetic is too.
MAX_COUNTER_VALUE = 10**15


class CounterStoreUnavailable(Exception):
    """The backing store could not be reached; the policy layer decides open or closed."""


class WindowUnit(StrEnum):
    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


_UNIT_SECONDS = {
    WindowUnit.SECOND: 1,
    WindowUnit.MINUTE: 60,
    WindowUnit.HOUR: 3600,
    WindowUnit.DAY: 86400,
}


@dataclass(frozen=True, slots=True)
class Window:
    """A counting window.

    Fixed-length units (second .. day, times ``count``) slide (weighted two-bucket
    approximation). ``MONTH`` is the calendar month in UTC, a fixed window that resets
    at 00:00 UTC on the 1st; ``count`` must be 1 for it.

    ``is_calendar_month``, ``name`` and the length are computed once, at construction:
    the counters read them several times per op on the request path (a property call
    each, ~20 µs a request in memory mode). They take no part in equality, hashing or
    the repr.
    """

    unit: WindowUnit
    count: int = 1
    is_calendar_month: bool = field(init=False, repr=False, compare=False)
    # Short stable name used in keys, e.g. ``60s`` or ``month``.
    name: str = field(init=False, repr=False, compare=False)
    # Length in seconds; 0 for a calendar month (see ``seconds``).
    fixed_seconds: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"window count must be >= 1, got {self.count}")
        month = self.unit is WindowUnit.MONTH
        if month and self.count != 1:
            raise ValueError("calendar month windows support count=1 only")
        length = 0 if month else _UNIT_SECONDS[self.unit] * self.count
        object.__setattr__(self, "is_calendar_month", month)
        object.__setattr__(self, "fixed_seconds", length)
        object.__setattr__(self, "name", "month" if month else f"{length}s")

    @property
    def seconds(self) -> int:
        """Length in seconds of a fixed-length window (not defined for months)."""
        if self.is_calendar_month:
            raise ValueError("a calendar month has no fixed length")
        return self.fixed_seconds


@dataclass(frozen=True, slots=True)
class CounterOp:
    """One counter of one request: add ``amount`` to ``key`` unless ``limit`` is exceeded.

    Units are whatever the policy counts (requests, tokens, micro-USD); ``amount`` may be 0
    to only read the counter.
    """

    key: str
    limit: int
    window: Window
    amount: int

    def __post_init__(self) -> None:
        if self.limit < 0 or self.amount < 0:
            raise ValueError(f"limit and amount must be >= 0 for {self.key!r}")


@dataclass(frozen=True, slots=True)
class CounterState:
    """What one counter looked like for one operation.

    ``used`` is the effective (sliding) usage after the increment when the request was
    admitted, otherwise the usage observed; ``remaining`` is the largest amount a next
    request could add now. ``reset_at`` is when the counter is back to zero if nothing
    more is added. In a denied request, every op that exceeds its own limit gets
    ``retry_at``, the earliest time its amount fits with no further traffic (None when the
    amount exceeds the limit itself); ``Retry-After`` is the latest of them.
    Times are epoch seconds.
    """

    key: str
    limit: int
    window: Window
    bucket_start: int
    used: int
    remaining: int
    reset_at: float
    retry_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReservedAmount:
    """An amount added to one bucket; enough to correct it later in the same bucket."""

    key: str
    window: Window
    bucket_start: int
    amount: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """What an admitted ``check_and_add`` added, for ``settle`` and ``release``."""

    entries: tuple[ReservedAmount, ...]


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Add ``delta`` (may be negative; the bucket never goes below 0) to one bucket."""

    key: str
    window: Window
    bucket_start: int
    delta: int


@dataclass(frozen=True, slots=True)
class CheckResult:
    """Outcome of ``check_and_add``: all ops added, or none.

    ``states`` has one entry per op, in order. ``denied_index`` is the first op that would
    have exceeded its limit (None when admitted). ``reservation`` is None when denied.
    """

    admitted: bool
    states: tuple[CounterState, ...]
    denied_index: int | None
    reservation: Reservation | None

    @property
    def denied(self) -> CounterState | None:
        return None if self.denied_index is None else self.states[self.denied_index]


def counter_key(tag_kind: str, tag_value: str, *parts: str, prefix: str = KEY_PREFIX) -> str:
    """Build ``<prefix>:{<tag_kind>:<tag_value>}:<part>:...``.

    The braces are a Redis Cluster hash tag: every key built with the same tag lands in
    the same slot, which a multi-key script needs. Parts are percent-encoded so that
    ``:``, ``{`` and ``}`` in ids can neither split a part nor open a second tag.
    """
    tag = f"{_enc(tag_kind)}:{_enc(tag_value)}"
    tail = ":".join(_enc(p) for p in parts)
    return f"{prefix}:{{{tag}}}:{tail}" if tail else f"{prefix}:{{{tag}}}"


def _enc(part: str) -> str:
    if not part:
        raise ValueError("counter key parts must be non-empty")
    return quote(part, safe="")
