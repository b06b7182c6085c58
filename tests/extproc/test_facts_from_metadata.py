"""`RequestFacts.from_metadata` reads the keys present: the same facts, and the same errors,
as reading codec by codec in field order (`_from_metadata_in_order`, the former way).
And `usage_record(…, metered=True)` builds at once the record the reader used to copy."""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_sidecar.extproc.completion import post_context
from policy_sidecar.extproc.facts import Ending, RequestFacts, usage_record
from policy_sidecar.providers.base import Usage
from policy_sidecar.usage.metering import metering
from policy_sidecar.usage.record import with_changes
from tests.extproc.test_facts import every_field_set, facts_values, texts

FIELDS = dataclasses.fields(RequestFacts)
KEYS = [f.metadata["key"] for f in FIELDS]
OPTIONAL = [f for f in FIELDS if f.default is not dataclasses.MISSING]

# The fields `facts_values` leaves at their default, set too.
all_facts = st.builds(
    lambda facts, quantity, estimated, price_key, ticket: facts.with_changes(
        quantity=quantity, quantity_estimated=estimated, price_key=price_key, ticket=ticket
    ),
    facts_values,
    st.none() | st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none() | texts,
    st.none() | texts,
)


def exactly(facts: RequestFacts | None) -> Any:
    """Equality that also tells an int from a float and sees the instance dict's order."""
    if facts is None:
        return None
    return [(k, type(v), repr(v)) for k, v in facts.__dict__.items()]


def former(values: dict[str, Any]) -> RequestFacts | None:
    """`from_metadata` as it was: a ``get`` per codec, in field order."""
    if values.get("rid") is None:
        return None
    return RequestFacts._from_metadata_in_order(values)


def both(values: dict[str, Any]) -> Any:
    """Each way's facts, or its error as (type, message)."""
    out = []
    for read in (RequestFacts.from_metadata, former):
        try:
            out.append(exactly(read(values)))
        except Exception as exc:
            out.append((type(exc), str(exc)))
    return out


def as_json(values: dict[str, Any]) -> dict[str, Any]:
    """As the access log line brings it back: JSON numbers as Envoy writes them."""
    out: dict[str, Any] = json.loads(json.dumps(values))
    return out


def test_every_field_alone_and_all_together() -> None:
    full = every_field_set()
    for f in OPTIONAL:
        facts = RequestFacts("rid", 1.0).with_changes(**{f.name: getattr(full, f.name)})
        for values in (facts.to_metadata(), as_json(facts.to_metadata())):
            got, expected = both(values)
            assert got == expected == exactly(facts), f.name
    for values in (full.to_metadata(), as_json(full.to_metadata())):
        got, expected = both(values)
        assert got == expected == exactly(full)


def test_every_pair_of_fields() -> None:
    full = every_field_set()
    for a, b in itertools.combinations(OPTIONAL, 2):
        facts = RequestFacts("rid", 1.0).with_changes(
            **{a.name: getattr(full, a.name), b.name: getattr(full, b.name)}
        )
        got, expected = both(as_json(facts.to_metadata()))
        assert got == expected == exactly(facts), (a.name, b.name)


@given(
    all_facts,
    st.randoms(use_true_random=False),
    st.dictionaries(st.sampled_from(["w", "rl_remaining_tokens", "x", ""]), texts, max_size=3),
    st.lists(st.sampled_from(KEYS), max_size=4),
)
def test_any_facts_any_key_order_foreign_keys_and_nulls(
    facts: RequestFacts, rnd: Any, foreign: dict[str, str], nulls: list[str]
) -> None:
    values = {**facts.to_metadata(), **foreign}
    for key in nulls:
        values[key] = None  # a null is the field's default (a required one: an error)
    items = list(values.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    got, expected = both(shuffled)
    assert got == expected
    got, expected = both(as_json(shuffled))
    assert got == expected
    if not nulls:
        assert RequestFacts.from_metadata(values) == facts


@given(
    st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True),
    st.randoms(use_true_random=False),
    st.data(),
)
def test_malformed_values_raise_the_first_error_in_field_order(
    keys: list[str], rnd: Any, data: st.DataObject
) -> None:
    values: dict[str, Any] = RequestFacts("rid", 1.0).to_metadata()
    for key in keys:
        values[key] = data.draw(
            st.sampled_from(["x", 7, 2.5, True, [1], "week,1,10,5,total,k", {"a": 1}])
        )
    items = list(values.items())
    rnd.shuffle(items)
    got, expected = both(dict(items))
    assert got == expected


def test_a_missing_or_null_start_is_the_same_error() -> None:
    for values in ({"rid": "r"}, {"rid": "r", "t0": None}, {"rid": "r", "t0": None, "est": "x"}):
        got, expected = both(values)
        assert got == expected
        assert got == (ValueError, "request facts: 't0' is missing")
    with pytest.raises(ValueError, match="'t0' is missing"):
        RequestFacts.from_metadata({"rid": "r", "app": "a"})
    assert RequestFacts.from_metadata({"t0": 1.0}) is None
    assert RequestFacts.from_metadata({"rid": None, "t0": 1.0}) is None


# --- the record built once -------------------------------------------------------------

usages = st.none() | st.builds(
    Usage,
    prompt_tokens=st.integers(-5, 10**6),
    completion_tokens=st.integers(-5, 10**6),
    total_tokens=st.integers(-5, 10**6),
    cached_tokens=st.integers(0, 100),
    unit=st.none() | st.sampled_from(["tokens", "images", "characters"]),
    quantity=st.none() | st.floats(0, 1e6),
    quantity_estimated=st.booleans(),
)
endings = st.builds(
    Ending,
    decision=st.sampled_from(["allow", "deny", "incomplete", "error"]),
    status_code=st.integers(0, 599),
    ended_at=st.floats(0, 2e9),
    streamed=st.none() | st.booleans(),
    usage=usages,
    usage_reported=st.booleans(),
    first_byte_at=st.none() | st.floats(0, 2e9),
    response_bytes=st.integers(0, 10**7),
    denied_by=st.none() | texts,
    usage_flags=st.lists(texts, max_size=2).map(tuple),
    upstream_account=st.none() | texts,
)
routes = st.sampled_from(
    [("openai", "chat"), ("openai", "images"), ("openai", "speech"), ("x", "y"), (None, None)]
)


@given(
    all_facts,
    st.floats(0, 2e9),
    routes,
    endings,
    st.none() | st.floats(0, 100),
    st.none() | st.integers(0, 9),
)
def test_the_record_built_once_is_the_record_copied_with_its_cost_and_metering(
    facts: RequestFacts,
    started_at: float,
    route: tuple[str | None, str | None],
    ending: Ending,
    cost: float | None,
    version: int | None,
) -> None:
    facts = facts.with_changes(started_at=started_at, provider=route[0], operation=route[1])
    first = usage_record(facts, ending)
    copied = with_changes(
        first, cost_usd=cost, price_version=version, post_violations=("p",), **metering(first)
    )
    once = usage_record(
        facts, ending, cost_usd=cost, price_version=version, post_violations=("p",), metered=True
    )
    assert json.dumps(once.to_json_dict()) == json.dumps(copied.to_json_dict())
    assert once == copied
    assert usage_record(facts, ending, cost_usd=0.0) == with_changes(first, cost_usd=0.0)
    ctx = post_context(facts, ending, ending.usage or Usage(), cost)
    assert (ctx.latency_ms, ctx.response_size_bytes, ctx.status_code) == (
        int(first.latency_ms or 0),
        first.response_bytes,
        first.status_code,
    )
