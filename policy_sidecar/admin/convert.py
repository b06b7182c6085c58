"""Conversions between protobuf messages and the store's values (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import field_mask_pb2, json_format, struct_pb2, timestamp_pb2

from policy_sidecar.admin.errors import Violations

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "check_environment",
    "decimal_text",
    "mask_paths",
    "page_size",
    "parse_decimal",
    "struct",
    "struct_dict",
    "timestamp",
    "to_datetime",
]

DEFAULT_PAGE_SIZE = 100
# The same rule as the CHECK constraint in 0001_core.sql, checked here first so the
# error names the request field rather than the constraint.
ENVIRONMENT = re.compile(r"[a-z][a-z0-9_-]{0,31}")
MAX_PAGE_SIZE = 500


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _integral(value: Any) -> Any:
    # Struct has only doubles; JSON has no int/float distinction, so 100.0 is 100.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def struct_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    result: dict[str, Any] = _integral(json_format.MessageToDict(value))
    return result


def struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(json.loads(json.dumps(dict(value), default=str)))
    return out


def page_size(value: int, field: str = "page_size", default: int = DEFAULT_PAGE_SIZE) -> int:
    if value == 0:
        return default
    if not 1 <= value <= MAX_PAGE_SIZE:
        v = Violations()
        v.add(field, f"must be between 1 and {MAX_PAGE_SIZE} (0 for {default})")
        v.check()
    return value


def mask_paths(
    mask: field_mask_pb2.FieldMask, allowed: Sequence[str], field: str = "update_mask"
) -> frozenset[str]:
    """The mask's paths; unknown or empty masks are field violations."""
    v = Violations()
    paths = frozenset(mask.paths)
    if not paths:
        v.add(f"{field}.paths", f"required: one or more of {', '.join(allowed)}")
    for path in sorted(paths - set(allowed)):
        v.add(f"{field}.paths", f"unknown or immutable path {path!r}")
    v.check()
    return paths


def parse_decimal(text: str, field: str, violations: Violations) -> Decimal:
    if not text:
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        violations.add(field, f"not a decimal number: {text!r}")
        return Decimal(0)
    if not value.is_finite() or value < 0:
        violations.add(field, "must be a non-negative number")
    return value


def decimal_text(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def check_environment(value: str, field: str, violations: Violations) -> None:
    if not value:
        violations.add(field, "required")
    elif not ENVIRONMENT.fullmatch(value):
        violations.add(field, "must match ^[a-z][a-z0-9_-]{0,31}$ (e.g. production)")
