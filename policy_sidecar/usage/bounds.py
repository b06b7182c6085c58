"""Every field of a usage record bounded before it is queued (pure, no I/O).

One record must never stop recording: a value the database cannot store (an 8 KB
request id in the primary key, a token count beyond bigint, a NUL byte in text)
would fail every batch it is in, and the sink would retry it forever. `bound_record`
turns each such value into one the database stores, and says what it changed in
``usage_flags``. The rules (docs/usage-recording.md, "Bounds"):

* ``request_id``: 1 to `MAX_REQUEST_ID` printable ASCII characters, else replaced by
  a UUID derived from the client's value and the start time (the same record always
  gets the same id, so a replay stays idempotent); the client's value, truncated to
  `MAX_TEXT`, is kept in ``client_request_id``.
* text: at most `MAX_TEXT` characters, no NUL, no unpaired surrogates; lists of text
  (violations, flags) at most `MAX_ITEMS` entries.
* token counts: 0 to `MAX_TOKENS`; byte counts 0 to `MAX_BYTES`; status 0 to 999;
  latencies and cost finite (else None) and not negative; the billed ``quantity``
  finite, 0 to `MAX_QUANTITY` (else 0).

`bound_record(bound_record(r)) == bound_record(r)`; a record already in bounds is
returned as is (no copy), which is the case for every request but a hostile one.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from typing import Any, Final

from policy_sidecar.usage.record import UsageRecord

__all__ = [
    "FLAG_REQUEST_ID_REPLACED",
    "FLAG_TEXT_TRUNCATED",
    "FLAG_TOKENS_OUT_OF_RANGE",
    "FLAG_VALUE_OUT_OF_RANGE",
    "MAX_BYTES",
    "MAX_ITEMS",
    "MAX_QUANTITY",
    "MAX_REQUEST_ID",
    "MAX_TEXT",
    "MAX_TOKENS",
    "bound_record",
]

MAX_REQUEST_ID: Final = 128
MAX_TEXT: Final = 256
MAX_ITEMS: Final = 64
#: Far above any model's context window, far below bigint (and its rollup sums).
MAX_TOKENS: Final = 10**9
MAX_BYTES: Final = 2**53
#: Latencies: about 30 years; only a broken clock gets there.
MAX_MS: Final = 1e12
#: numeric(20, 10) holds less than 1e10.
MAX_COST_USD: Final = 1e9
#: A quantity in any unit (tokens, images, seconds…); numeric(20, 6) holds < 1e14.
MAX_QUANTITY: Final = 1e12

FLAG_REQUEST_ID_REPLACED: Final = "request_id_replaced"
FLAG_TEXT_TRUNCATED: Final = "text_truncated"
FLAG_TOKENS_OUT_OF_RANGE: Final = "tokens_out_of_range"
FLAG_VALUE_OUT_OF_RANGE: Final = "value_out_of_range"

# Fixed, so a replayed record gets the same replacement id on every process.
_ID_NAMESPACE: Final = uuid.UUID("6f1c3b7e-4a52-4d8e-9c1a-2b7e5d0f9a31")

_TEXT_FIELDS: Final = (
    "org_id", "app_id", "environment", "api_key_id", "provider", "operation",
    "requested_model", "served_model", "denied_by", "client_request_id", "unit",
    "upstream_account",
)  # fmt: skip
_LIST_FIELDS: Final = ("shadow_violations", "post_violations")
_TOKEN_FIELDS: Final = (
    "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
    "reasoning_tokens", "estimated_tokens",
)  # fmt: skip
_BYTE_FIELDS: Final = ("request_bytes", "response_bytes")
_FLOAT_FIELDS: Final = ("latency_ms", "ttft_ms")


def bound_record(record: UsageRecord) -> UsageRecord:
    """`record` with every field within what the sinks store; see the module doc."""
    changes: dict[str, Any] = {}
    flags: list[str] = []
    if not valid_request_id(record.request_id):
        changes["request_id"] = replacement_id(record.request_id, record.started_at.isoformat())
        changes["client_request_id"] = clean_text(record.request_id) or None
        flags.append(FLAG_REQUEST_ID_REPLACED)
    for name in _TEXT_FIELDS:
        value = changes.get(name, getattr(record, name))
        if value is not None and (cleaned := clean_text(value)) != value:
            changes[name] = cleaned
            _flag(flags, FLAG_TEXT_TRUNCATED)
    for name in _LIST_FIELDS:
        items = getattr(record, name)
        cleaned_items = tuple(clean_text(v) for v in items[:MAX_ITEMS])
        if cleaned_items != items:
            changes[name] = cleaned_items
            _flag(flags, FLAG_TEXT_TRUNCATED)
    for name in _TOKEN_FIELDS:
        if (n := _clamp_int(getattr(record, name), MAX_TOKENS)) is not None:
            changes[name] = n
            _flag(flags, FLAG_TOKENS_OUT_OF_RANGE)
    for name in _BYTE_FIELDS:
        if (n := _clamp_int(getattr(record, name), MAX_BYTES)) is not None:
            changes[name] = n
            _flag(flags, FLAG_VALUE_OUT_OF_RANGE)
    if (n := _clamp_int(record.status_code, 999)) is not None:
        changes["status_code"] = n
        _flag(flags, FLAG_VALUE_OUT_OF_RANGE)
    for name, ceiling in (*((f, MAX_MS) for f in _FLOAT_FIELDS), ("cost_usd", MAX_COST_USD)):
        value = getattr(record, name)
        if value is not None and not (0.0 <= value <= ceiling):
            # NaN or infinity would poison every rollup sum it joins.
            changes[name] = min(max(value, 0.0), ceiling) if math.isfinite(value) else None
            _flag(flags, FLAG_VALUE_OUT_OF_RANGE)
    if (q := _clamp_quantity(record.quantity)) is not None:
        changes["quantity"] = q
        _flag(flags, FLAG_VALUE_OUT_OF_RANGE)
    old_flags = record.usage_flags
    new_flags = tuple(clean_text(f) for f in old_flags[:MAX_ITEMS])
    new_flags += tuple(f for f in flags if f not in new_flags)
    if new_flags != old_flags:
        changes["usage_flags"] = new_flags
    return replace(record, **changes) if changes else record


def valid_request_id(value: str) -> bool:
    """1 to `MAX_REQUEST_ID` printable ASCII characters, no spaces (UUIDs, ULIDs, req_…)."""
    return (
        0 < len(value) <= MAX_REQUEST_ID
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


def replacement_id(client_id: str, started_at: str) -> str:
    """A UUID standing for an unfit client id: the same inputs give the same id."""
    name = client_id.encode("utf-8", "surrogatepass").hex() + "|" + started_at
    return str(uuid.uuid5(_ID_NAMESPACE, name))


def clean_text(value: str) -> str:
    """At most `MAX_TEXT` characters, without NUL or unpaired surrogates."""
    if len(value) <= MAX_TEXT and value.isascii() and "\x00" not in value:
        return value  # the common case, cheaply
    value = value[:MAX_TEXT].replace("\x00", "")
    return value.encode("utf-8", "replace").decode("utf-8")


def _clamp_int(value: object, ceiling: int) -> int | None:
    """The clamped value, or None when `value` is already an int in [0, ceiling]."""
    if type(value) is int and 0 <= value <= ceiling:
        return None
    try:
        n: int = int(value)  # type: ignore[call-overload]  # a float or str from an old spool
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(n, 0), ceiling)


def _clamp_quantity(value: object) -> float | None:
    """The bounded quantity, or None when `value` is already a float in bounds."""
    if type(value) in (int, float) and 0.0 <= value <= MAX_QUANTITY:  # type: ignore[operator]
        return None
    try:
        q = float(value)  # type: ignore[arg-type]  # an int or str from an old spool
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if not math.isfinite(q):
        return 0.0
    return min(max(q, 0.0), MAX_QUANTITY)


def _flag(flags: list[str], flag: str) -> None:
    if flag not in flags:
        flags.append(flag)
