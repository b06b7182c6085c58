"""UsageRecord survives the spool's JSON round trip unchanged."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from policy_sidecar.usage.record import UsageRecord, with_changes

FULL = UsageRecord(
    request_id="req-1",
    started_at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
    decision="allow",
    status_code=200,
    org_id="org",
    app_id="app",
    environment="production",
    api_key_id="key_1",
    provider="openai",
    operation="chat.completions",
    requested_model="fast",
    served_model="gpt-4o-mini-2024-07-18",
    streamed=True,
    prompt_tokens=1234,
    completion_tokens=56,
    total_tokens=1290,
    cached_tokens=1024,
    reasoning_tokens=7,
    estimated_tokens=1200,
    usage_reported=True,
    latency_ms=812.0000001,
    ttft_ms=0.1,
    request_bytes=4096,
    response_bytes=9000,
    cost_usd=0.000123456789,
    denied_by=None,
    shadow_violations=("pol_a", "pol_b"),
    post_violations=("pol_c",),
)


@pytest.mark.parametrize(
    "record",
    [
        FULL,
        UsageRecord("r", datetime(2026, 1, 1, tzinfo=UTC), "deny", 429, denied_by="pol_rate"),
        UsageRecord(
            "r2",
            datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=2))),
            "incomplete",
            0,
        ),
    ],
    ids=["full", "minimal-deny", "offset-timezone"],
)
def test_json_round_trip(record: UsageRecord) -> None:
    text = json.dumps(record.to_json_dict())
    back = UsageRecord.from_json_dict(json.loads(text))
    assert back == record
    assert back.started_at.utcoffset() == record.started_at.utcoffset()


def test_unknown_keys_are_ignored() -> None:
    data = FULL.to_json_dict() | {"added_in_a_later_version": 1}
    assert UsageRecord.from_json_dict(data) == FULL


@pytest.mark.parametrize(
    ("change", "error"),
    [({"request_id": None}, KeyError), ({"started_at": "yesterday"}, ValueError)],
    ids=["missing-id", "bad-time"],
)
def test_bad_input_raises(change: dict[str, object], error: type[Exception]) -> None:
    data = FULL.to_json_dict() | change
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(error):
        UsageRecord.from_json_dict(data)


def test_with_changes_is_replace() -> None:
    changes = {"cost_usd": 0.25, "unit": "tokens", "quantity": 14.0, "post_violations": ("p",)}
    assert with_changes(FULL, **changes) == dataclasses.replace(FULL, **changes)
    assert with_changes(FULL) == FULL and with_changes(FULL) is not FULL
    with pytest.raises(TypeError, match="no_such_field"):
        with_changes(FULL, no_such_field=1)
    # What makes the shortcut valid: nothing runs in __init__ but the assignments.
    assert not hasattr(UsageRecord, "__post_init__")
    assert all(f.init for f in dataclasses.fields(UsageRecord))
