"""Usage records carry their route's unit and the quantity billed in it."""

from __future__ import annotations

from datetime import UTC, datetime

from policy_sidecar.usage.bounds import FLAG_VALUE_OUT_OF_RANGE, MAX_QUANTITY, bound_record
from policy_sidecar.usage.metering import metered, metering
from policy_sidecar.usage.record import UsageRecord

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _record(**kw: object) -> UsageRecord:
    return UsageRecord(request_id="r1", started_at=T0, decision="allow", status_code=200, **kw)  # type: ignore[arg-type]


def test_a_token_route_is_metered_in_tokens_its_billed_total() -> None:
    record = metered(_record(provider="openai", operation="chat", total_tokens=42))
    assert (record.unit, record.quantity) == ("tokens", 42.0)


def test_a_denied_token_request_has_the_unit_and_no_quantity() -> None:
    record = metered(_record(provider="anthropic", operation="messages", estimated_tokens=9))
    assert (record.unit, record.quantity) == ("tokens", 0.0)


def test_no_metered_route_no_unit() -> None:
    record = _record(provider=None, operation=None)
    assert metered(record) is record
    assert record.unit is None and record.quantity == 0.0


def test_a_unit_set_by_the_route_parser_is_kept() -> None:
    record = _record(provider="openai", operation="chat", unit="images", quantity=2.0)
    assert metered(record) is record


def test_the_unit_and_quantity_survive_the_spool_json() -> None:
    record = metered(_record(provider="gemini", operation="generate", total_tokens=7))
    assert UsageRecord.from_json_dict(record.to_json_dict()) == record


def test_a_quantity_out_of_bounds_is_clamped_and_flagged() -> None:
    for bad, expected in ((float("nan"), 0.0), (-3.0, 0.0), (1e300, MAX_QUANTITY)):
        bounded = bound_record(_record(unit="seconds", quantity=bad))
        assert bounded.quantity == expected
        assert FLAG_VALUE_OUT_OF_RANGE in bounded.usage_flags
    fine = _record(unit="seconds", quantity=3)
    assert bound_record(fine) is fine


def test_metering_names_exactly_what_metered_changes() -> None:
    record = _record(provider="openai", operation="chat", total_tokens=42)
    assert metering(record) == {"unit": "tokens", "quantity": 42.0}
    assert metering(metered(record)) == {}
    assert metering(_record(provider=None, operation=None)) == {}
