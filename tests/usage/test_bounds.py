"""`bound_record`: every field within what the sinks store, before it is queued."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from policy_sidecar.usage.bounds import (
    FLAG_REQUEST_ID_REPLACED,
    FLAG_TEXT_TRUNCATED,
    FLAG_TOKENS_OUT_OF_RANGE,
    FLAG_VALUE_OUT_OF_RANGE,
    MAX_BYTES,
    MAX_ITEMS,
    MAX_TEXT,
    MAX_TOKENS,
    bound_record,
)
from policy_sidecar.usage.record import UsageRecord

from .helpers import rec

UUID_ID = "3f2b8a52-0c1e-4a8f-9d6e-5b7c1a2e4f60"


@pytest.mark.parametrize("request_id", [UUID_ID, "req_01HZX3", "a", "x" * 128, "trace:1.2-3_4/5"])
def test_valid_records_are_returned_as_they_are(request_id: str) -> None:
    record = replace(rec(1), request_id=request_id)
    assert bound_record(record) is record


@pytest.mark.parametrize(
    "request_id",
    ["x" * 8192, "x" * 129, "", "has space", "caf\u00e9", "nul\x00", "tab\there", "\ud800"],
)
def test_unfit_request_id_is_replaced_and_the_client_value_kept(request_id: str) -> None:
    record = replace(rec(1), request_id=request_id)
    out = bound_record(record)
    assert out.request_id != request_id
    assert len(out.request_id) == 36  # a UUID
    assert FLAG_REQUEST_ID_REPLACED in out.usage_flags
    if request_id.isascii() and "\x00" not in request_id:
        assert out.client_request_id == (request_id[:MAX_TEXT] or None)
    assert out.client_request_id is None or len(out.client_request_id) <= MAX_TEXT
    # Deterministic (a replayed record keeps its id), idempotent, distinct per request.
    assert bound_record(record) == out
    assert bound_record(out) == out
    later = replace(record, started_at=record.started_at.replace(microsecond=7))
    assert bound_record(later).request_id != out.request_id


@pytest.mark.parametrize(
    ("field", "value", "expected", "flag"),
    [
        ("prompt_tokens", 10**30, MAX_TOKENS, FLAG_TOKENS_OUT_OF_RANGE),
        ("completion_tokens", -1005, 0, FLAG_TOKENS_OUT_OF_RANGE),
        ("total_tokens", 2**63, MAX_TOKENS, FLAG_TOKENS_OUT_OF_RANGE),
        ("cached_tokens", -1, 0, FLAG_TOKENS_OUT_OF_RANGE),
        ("reasoning_tokens", 4 * 10**18, MAX_TOKENS, FLAG_TOKENS_OUT_OF_RANGE),
        ("estimated_tokens", 10**12, MAX_TOKENS, FLAG_TOKENS_OUT_OF_RANGE),
        ("prompt_tokens", 1e30, MAX_TOKENS, FLAG_TOKENS_OUT_OF_RANGE),  # an old spool line
        ("request_bytes", -5, 0, FLAG_VALUE_OUT_OF_RANGE),
        ("response_bytes", 2**70, MAX_BYTES, FLAG_VALUE_OUT_OF_RANGE),
        ("status_code", 2**40, 999, FLAG_VALUE_OUT_OF_RANGE),
        ("status_code", -1, 0, FLAG_VALUE_OUT_OF_RANGE),
        ("latency_ms", math.nan, None, FLAG_VALUE_OUT_OF_RANGE),
        ("ttft_ms", math.inf, None, FLAG_VALUE_OUT_OF_RANGE),
        ("latency_ms", -3.0, 0.0, FLAG_VALUE_OUT_OF_RANGE),
        ("cost_usd", 1e30, 1e9, FLAG_VALUE_OUT_OF_RANGE),
        ("cost_usd", -math.inf, None, FLAG_VALUE_OUT_OF_RANGE),
        ("requested_model", "m" * 8192, "m" * MAX_TEXT, FLAG_TEXT_TRUNCATED),
        ("served_model", "gpt\x00-4o", "gpt-4o", FLAG_TEXT_TRUNCATED),
        ("denied_by", "p\ud800", "p?", FLAG_TEXT_TRUNCATED),
        ("shadow_violations", ("ok",) * 100, ("ok",) * MAX_ITEMS, FLAG_TEXT_TRUNCATED),
        ("post_violations", ("a\x00b",), ("ab",), FLAG_TEXT_TRUNCATED),
    ],
)
def test_out_of_bounds_values_are_bounded_and_flagged(
    field: str, value: Any, expected: Any, flag: str
) -> None:
    record = replace(rec(1), **{field: value})
    out = bound_record(record)
    assert getattr(out, field) == expected
    assert out.usage_flags == (flag,)
    assert out.request_id == record.request_id
    assert bound_record(out) is out


def test_flags_already_set_at_the_edge_are_kept() -> None:
    record = replace(rec(1), usage_flags=("prompt_capped",), prompt_tokens=-1)
    assert bound_record(record).usage_flags == ("prompt_capped", FLAG_TOKENS_OUT_OF_RANGE)


def test_json_round_trip_keeps_the_new_fields() -> None:
    out = bound_record(replace(rec(1), request_id="x" * 300, total_tokens=-1))
    assert UsageRecord.from_json_dict(out.to_json_dict()) == out
