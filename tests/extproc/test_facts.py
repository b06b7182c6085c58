"""One request's facts: the metadata round trip and the one usage-record builder."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from policy_sidecar.counters.values import Window, WindowUnit
from policy_sidecar.extproc.facts import Ending, RequestFacts, usage_record
from policy_sidecar.extproc.handover import facts_from_struct, to_metadata
from policy_sidecar.identity.resolver import Identity
from policy_sidecar.limits.enforcer import Charge
from policy_sidecar.providers.base import Route, Usage

# Struct numbers are doubles: integers are exact up to 2**53.
ints = st.integers(min_value=-(2**53), max_value=2**53)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
charges = st.builds(
    Charge,
    key=texts,
    window=st.builds(
        Window,
        st.sampled_from([u for u in WindowUnit if u is not WindowUnit.MONTH]),
        st.integers(1, 10_000),
    )
    | st.just(Window(WindowUnit.MONTH, 1)),
    bucket_start=ints,
    amount=ints,
    count=st.sampled_from(["total", "prompt", "completion", "cost_usd"]),
)
facts_values = st.builds(
    RequestFacts,
    request_id=texts,
    started_at=st.floats(allow_nan=False, allow_infinity=False),
    recorded=st.booleans(),
    app_id=st.none() | texts,
    org_id=st.none() | texts,
    environment=st.none() | texts,
    key_id=st.none() | texts,
    provider=st.none() | texts,
    operation=st.none() | texts,
    model_from_path=st.none() | texts,
    stream_from_path=st.booleans(),
    api_version=st.none() | texts,
    requested_model=st.none() | texts,
    served_model=st.none() | texts,
    stream=st.booleans(),
    estimated_tokens=ints,
    max_tokens=st.none() | ints,
    request_bytes=ints,
    shadow=st.lists(texts, max_size=3).map(tuple),
    charges=st.lists(charges, max_size=3).map(tuple),
)


def through_struct(values: dict[str, Any]) -> struct_pb2.Struct:
    """As Envoy hands it back: a protobuf Struct, serialized and parsed."""
    out = struct_pb2.Struct()
    out.update(values)
    return struct_pb2.Struct.FromString(out.SerializeToString())


@given(facts_values)
def test_metadata_round_trip_is_the_identity(facts: RequestFacts) -> None:
    assert facts_from_struct(through_struct(facts.to_metadata())) == facts


CHARGE = Charge("k", Window(WindowUnit.DAY, 1), 10, 5, "total")
# A value other than the default for each field type of RequestFacts.
NON_DEFAULT: dict[Any, Any] = {
    str: "set",
    int: 7,
    float: 2.5,
    bool: True,
    tuple[str, ...]: ("p-1",),
    tuple[Charge, ...]: (CHARGE,),
}


def every_field_set() -> RequestFacts:
    """Facts whose every field differs from its default (a new field's type must be
    added to NON_DEFAULT)."""
    values: dict[str, Any] = {}
    for name, tp in typing.get_type_hints(RequestFacts).items():
        if isinstance(tp, types.UnionType):
            (tp,) = (a for a in typing.get_args(tp) if a is not type(None))
        values[name] = NON_DEFAULT[tp]
    facts = RequestFacts(**values)
    for f in dataclasses.fields(RequestFacts):
        assert getattr(facts, f.name) != f.default, f.name
    return facts


def test_with_changes_copies_every_field() -> None:
    full = every_field_set()
    copy = full.with_changes()
    assert copy == full and copy is not full
    bare = RequestFacts("rid", 1.0)
    for f in dataclasses.fields(RequestFacts):
        value = getattr(full, f.name)
        assert bare.with_changes(**{f.name: value}) == dataclasses.replace(bare, **{f.name: value})
        assert full.with_changes(**{f.name: getattr(bare, f.name)}) == dataclasses.replace(
            full, **{f.name: getattr(bare, f.name)}
        )
    assert (
        bare.with_changes(**{f.name: getattr(full, f.name) for f in dataclasses.fields(full)})
        == full
    )
    with pytest.raises(TypeError, match="no_such_field"):
        bare.with_changes(no_such_field=1)
    # What makes the shortcut valid: nothing runs in __init__ but the assignments, and
    # the instance dict (which it copies) holds the fields and nothing else.
    assert not hasattr(RequestFacts, "__post_init__")
    assert all(f.init for f in dataclasses.fields(RequestFacts))
    assert set(full.__dict__) == {f.name for f in dataclasses.fields(RequestFacts)}
    assert set(full.with_changes(stream=False).__dict__) == set(full.__dict__)


@given(facts_values, facts_values)
def test_with_changes_is_replace(a: RequestFacts, b: RequestFacts) -> None:
    changes = {f.name: getattr(b, f.name) for f in dataclasses.fields(b) if f.name < "m"}
    assert a.with_changes(**changes) == dataclasses.replace(a, **changes)


def test_every_field_has_its_own_wire_key() -> None:
    keys = [f.metadata["key"] for f in dataclasses.fields(RequestFacts)]
    assert len(keys) == len(set(keys))


def test_defaults_are_not_sent_and_rate_headers_use_envoys_names() -> None:
    facts = RequestFacts("rid-1", 1.5)
    values = to_metadata(facts, {"x-ratelimit-remaining-tokens": "7"})
    assert values == {"rid": "rid-1", "t0": 1.5, "rl_remaining_tokens": "7"}
    assert facts_from_struct(through_struct(values)) == facts


def test_no_request_id_is_no_facts() -> None:
    assert facts_from_struct(through_struct({"t0": 1.0})) is None


def test_the_facts_rebuild_route_identity_and_context() -> None:
    route = Route("gemini", "generate", model_from_path="g", stream_from_path=True)
    identity = Identity("app1", "org1", "dev", "k1")
    facts = dataclasses.replace(
        RequestFacts.for_route("rid", 0.0, route).with_identity(identity),
        requested_model="fast",
        served_model="gpt-4o-mini",
        stream=True,
        estimated_tokens=9,
        max_tokens=5,
        request_bytes=100,
    )
    assert facts.route() == route
    assert facts.identity() == identity
    pre = facts.pre_context()
    assert (pre.model, pre.upstream_model, pre.provider) == ("fast", "gpt-4o-mini", "gemini")
    assert (pre.request_size_bytes, pre.estimated_tokens, pre.max_tokens) == (100, 9, 5)
    assert (pre.app_id, pre.org_id, pre.environment, pre.stream) == ("app1", "org1", "dev", True)
    same = dataclasses.replace(facts, served_model="fast")
    assert same.pre_context().upstream_model == ""
    assert RequestFacts("rid", 0.0).route() is None
    assert RequestFacts("rid", 0.0).identity() is None


def test_one_builder_makes_the_record_from_facts_and_ending() -> None:
    facts = RequestFacts(
        "rid-7",
        100.0,
        app_id="app1",
        org_id="org1",
        environment="dev",
        key_id="k1",
        provider="openai",
        operation="chat",
        requested_model="fast",
        served_model="gpt-4o-mini",
        stream=True,
        estimated_tokens=11,
        request_bytes=120,
        shadow=("p-shadow",),
    )
    usage = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7, cached_tokens=1)
    ending = Ending(
        "allow",
        200,
        ended_at=100.25,
        streamed=False,
        usage=usage,
        usage_reported=True,
        first_byte_at=100.125,
        response_bytes=64,
        usage_flags=("clamped",),
    )
    record = usage_record(facts, ending)
    assert record.started_at == datetime.fromtimestamp(100.0, UTC)
    assert (record.request_id, record.decision, record.status_code) == ("rid-7", "allow", 200)
    assert (record.app_id, record.org_id, record.environment, record.api_key_id) == (
        "app1",
        "org1",
        "dev",
        "k1",
    )
    assert (record.provider, record.operation) == ("openai", "chat")
    assert (record.requested_model, record.served_model) == ("fast", "gpt-4o-mini")
    assert record.streamed is False  # what the response did, not what was asked
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (3, 4, 7)
    assert (record.cached_tokens, record.usage_reported) == (1, True)
    assert (record.latency_ms, record.ttft_ms) == (250.0, 125.0)
    assert (record.estimated_tokens, record.request_bytes, record.response_bytes) == (11, 120, 64)
    assert (record.shadow_violations, record.usage_flags) == (("p-shadow",), ("clamped",))
    assert record.denied_by is None


def test_a_denial_record_keeps_the_requested_stream_and_names_the_policy() -> None:
    facts = RequestFacts("rid-8", 10.0, stream=True, requested_model="m")
    record = usage_record(facts, Ending("deny", 429, ended_at=10.5, denied_by="p1"))
    assert (record.decision, record.status_code, record.denied_by) == ("deny", 429, "p1")
    assert record.streamed is True
    assert (record.total_tokens, record.usage_reported, record.ttft_ms) == (0, False, None)
    assert record.latency_ms == 500.0


# --- the charges on the wire -----------------------------------------------------------

COST = Charge(
    "ps:{org:o%201}:app:a,b:p-cost", Window(WindowUnit.MONTH, 1), 1_798_761_600, 54, "cost_usd"
)


def test_the_charges_cross_as_one_string() -> None:
    facts = RequestFacts("rid", 1.0, charges=(CHARGE, COST))
    values = facts.to_metadata()
    assert values["ch"] == (
        "day,1,10,5,total,k month,1,1798761600,54,cost_usd,ps:{org:o%201}:app:a,b:p-cost"
    )
    assert facts_from_struct(through_struct(values)) == facts


def test_the_list_form_of_an_older_sidecar_is_still_read() -> None:
    old = {
        "rid": "rid",
        "t0": 1.0,
        "ch": [c.to_list() for c in (CHARGE, COST)],
    }
    assert facts_from_struct(through_struct(old)) == RequestFacts(
        "rid", 1.0, charges=(CHARGE, COST)
    )
    # Struct numbers come back as floats; strings as some writers left them.
    as_text = {**old, "ch": [[str(v) for v in c.to_list()] for c in (CHARGE, COST)]}
    assert RequestFacts.from_metadata(as_text) == RequestFacts("rid", 1.0, charges=(CHARGE, COST))


def test_a_key_with_a_space_falls_back_to_the_list_form() -> None:
    # Counter keys are percent-encoded and never hold one; the encoding still round-trips.
    odd = Charge("a b", Window(WindowUnit.MINUTE, 5), 60, 1, "total")
    values = RequestFacts("rid", 1.0, charges=(CHARGE, odd)).to_metadata()
    assert isinstance(values["ch"], list)
    assert facts_from_struct(through_struct(values)) == RequestFacts(
        "rid", 1.0, charges=(CHARGE, odd)
    )


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "day,1,10,5,total",  # no key
        "day,1,10,5,total,k  day,1,10,5,total,k",  # an empty charge between two spaces
        "week,1,10,5,total,k",  # no such unit
        "day,0,10,5,total,k",  # a window of no length
        "month,2,10,5,total,k",
        "day,1,ten,5,total,k",
        "day,1,10,5.5,total,k",
        7,
        True,
        [["k", "day"]],
        [["k", "day", "x", 10, 5, "total"]],
        [7],
    ],
)
def test_malformed_charges_are_a_value_error_naming_them(raw: Any) -> None:
    with pytest.raises(ValueError, match="'ch'"):
        RequestFacts.from_metadata({"rid": "rid", "t0": 1.0, "ch": raw})
