"""Reservations of admitted requests whose access log line comes without the body
phase's facts are given back (extproc/reservations.py), on in-memory and Redis
counters: the policy filter driven directly, its answers turned into the lines Envoy
writes."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from google.protobuf import json_format

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import CounterOp, Window, WindowUnit
from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.reservations import (
    ENDED_SECONDS,
    PENDING_SECONDS,
    PendingReservations,
)
from policy_sidecar.extproc.responses import METADATA_NAMESPACE
from policy_sidecar.extproc.services import Services
from policy_sidecar.limits.enforcer import Charge, Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy.context import PreRequestContext
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.source import StaticPolicySource
from policy_sidecar.store.standalone import StandaloneIdentityResolver, parse_standalone_config
from tests.conftest import KEY, FakeClock
from tests.extproc.access_lines import entry
from tests.extproc.messages import body, chat_body, request_headers

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKER = "50051"


def facts(ticket: str | None, request_id: str = "rid-1") -> RequestFacts:
    charge = Charge("k{a}", Window(WindowUnit.DAY), 0, 10, "total")
    return RequestFacts(request_id, 0.0, ticket=ticket, charges=(charge,))


# --- the bookkeeping ------------------------------------------------------------------


def test_tickets_are_unique_and_another_process_never_matches() -> None:
    one, other = PendingReservations(), PendingReservations()
    tickets = {one.issue() for _ in range(1000)}
    assert len(tickets) == 1000
    assert tickets.isdisjoint({other.issue() for _ in range(1000)})


def test_a_kept_reservation_is_taken_once_by_its_line() -> None:
    pending = PendingReservations()
    ticket = pending.issue()
    kept = facts(ticket)
    assert pending.add(kept, 0.0) and len(pending) == 1
    assert pending.take(ticket, 1.0, facts_arrived=False) == kept
    assert pending.take(ticket, 1.0, facts_arrived=False) is None
    assert len(pending) == 0


def test_a_request_without_charges_is_not_kept() -> None:
    pending = PendingReservations()
    assert pending.add(RequestFacts("rid", 0.0, ticket=pending.issue()), 0.0)
    assert len(pending) == 0


def test_a_line_before_the_admission_makes_the_admission_give_back() -> None:
    pending = PendingReservations()
    ticket = pending.issue()
    assert pending.take(ticket, 0.0, facts_arrived=False) is None
    assert not pending.add(facts(ticket), 1.0)  # the caller gives it back
    assert len(pending) == 0
    # ... only for a while: an admission that late is not this line's.
    late = pending.issue()
    pending.take(late, 0.0, facts_arrived=False)
    assert pending.add(facts(late), ENDED_SECONDS + 1)


def test_a_line_with_facts_or_of_another_process_marks_nothing() -> None:
    pending, other = PendingReservations(), PendingReservations()
    mine, theirs = pending.issue(), other.issue()
    pending.take(mine, 0.0, facts_arrived=True)
    pending.take(theirs, 0.0, facts_arrived=False)
    assert pending.add(facts(mine), 1.0)
    assert pending.add(facts(theirs), 1.0)


def test_a_reservation_without_a_line_is_dropped_kept_as_charged() -> None:
    pending = PendingReservations()
    old, new = pending.issue(), pending.issue()
    pending.add(facts(old), 0.0)
    pending.add(facts(new), PENDING_SECONDS + 1)  # sweeps the old one
    assert len(pending) == 1 and pending.expired == 1
    assert pending.take(old, PENDING_SECONDS + 2, facts_arrived=False) is None
    assert pending.take(new, PENDING_SECONDS + 2, facts_arrived=False) is not None


# --- through the processor and the reader ---------------------------------------------


def config_text(org: str) -> str:
    return f"""
version: 1
applications:
  - id: app1
    org_id: {org}
    keys: [{{environment: dev, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
policies:
  - id: tok-day
    name: tokens a day
    type: token_limit
    config: {{limit: 1000000000, window: 1d, count: total}}
"""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CounterStore]:
    if request.param == "memory":
        yield InMemoryCounterStore()
        return
    redis = RedisCounterStore.from_url(REDIS_URL, socket_timeout=5.0, connect_timeout=5.0)
    try:
        yield redis
    finally:
        await redis.aclose()


@pytest.fixture
def limited(
    make_services: Callable[..., Services], store: CounterStore, clock: FakeClock
) -> Services:
    config = parse_standalone_config(config_text(f"org-{uuid.uuid4().hex[:10]}"), source="t")
    return make_services(
        identities=StandaloneIdentityResolver(config.keys),
        policies=StaticPolicySource(PolicyEngine(config.policies)),
        enforcer=Enforcer(store, InMemoryPenaltyBox(), clock),
        models=config.models,
        worker=WORKER,
    )


def metadata_of(response: Any) -> dict[str, Any]:
    if METADATA_NAMESPACE not in response.dynamic_metadata.fields:
        return {}
    struct = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value
    found: dict[str, Any] = json_format.MessageToDict(struct)
    return found


async def admitted(services: Services, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metadata of the headers and of the body responses of an admitted request."""
    processor = PolicyProcessor(services)
    data = chat_body()
    extra = {"x-request-id": request_id}
    first = await processor.on_request_headers(request_headers(KEY, body=data, extra=extra))
    second = await processor.on_request_body(body(data))
    assert second.WhichOneof("response") == "request_body"
    return metadata_of(first), metadata_of(second)


async def used(services: Services, store: CounterStore, clock: FakeClock) -> int:
    identity = await services.identities.resolve(KEY)
    assert identity is not None
    engine = await services.policies.engine_for(identity)
    (policy,) = engine.counters(identity, "gpt-4o-mini")
    ctx = PreRequestContext(0, 0, "gpt-4o-mini", "", "", "", "openai", False, None)
    op = policy.op(identity, ctx, None)
    probe = await store.check_and_add([CounterOp(op.key, op.limit, op.window, 0)], clock.now)
    return probe.states[0].used


def answer(prompt: int, completion: int) -> bytes:
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return json.dumps({"id": "c", "object": "chat.completion", "usage": usage}).encode()


async def test_the_headers_phase_names_the_worker_and_the_ticket(limited: Services) -> None:
    on_headers, on_body = await admitted(limited, "rid-1")
    assert on_headers == {"w": WORKER, "tk": on_body["tk"]}
    assert on_body["w"] == WORKER and on_body["ch"]  # the body's facts: charges too


async def test_a_line_without_the_facts_gives_the_reservation_back(
    limited: Services, store: CounterStore, clock: FakeClock
) -> None:
    # Two requests with the same id (the client chose it): one served, one whose client
    # went away before Envoy had the body phase's answer.
    served_headers, served_body = await admitted(limited, "same-id")
    cut_headers, _ = await admitted(limited, "same-id")
    assert served_headers["tk"] != cut_headers["tk"]
    reserved = await used(limited, store, clock)
    assert reserved > 0 and len(limited.pending) == 2
    completer = Completer(limited)
    cut = await completer.complete(
        entry(cut_headers, status=0, flags="DC", lua=False, request_id="same-id")
    )
    served = await completer.complete(
        entry(served_body, chunks=[answer(9, 5)], request_id="same-id", started_at=clock.now)
    )
    await limited.tasks.drain()
    assert await used(limited, store, clock) == 14  # the served one's usage, nothing else
    assert len(limited.pending) == 0
    assert cut is not None and served is not None
    assert (cut.decision, cut.app_id, cut.requested_model) == ("incomplete", "app1", "gpt-4o-mini")
    assert (cut.total_tokens, cut.cost_usd, cut.usage_reported) == (0, 0.0, False)
    assert cut.estimated_tokens > 0
    assert (served.decision, served.total_tokens) == ("allow", 14)


async def test_a_timed_out_body_phase_is_an_error_and_gives_back(
    limited: Services, store: CounterStore, clock: FakeClock
) -> None:
    on_headers, _ = await admitted(limited, "rid-t")
    record = await Completer(limited).complete(
        entry(on_headers, status=504, error="policy_sidecar_timeout", lua=False, request_id="rid-t")
    )
    assert record is not None
    assert (record.decision, record.denied_by) == ("error", "policy_sidecar_timeout")
    assert await used(limited, store, clock) == 0


async def test_a_line_read_before_the_admission_ended_gives_back_at_admission(
    limited: Services, store: CounterStore, clock: FakeClock
) -> None:
    processor = PolicyProcessor(limited)
    data = chat_body()
    first = await processor.on_request_headers(request_headers(KEY, body=data))
    line = entry(metadata_of(first), status=0, flags="DC", lua=False, request_id="rid-1")
    record = await Completer(limited).complete(line)
    assert record is not None and record.decision == "error"  # nothing kept yet
    await processor.on_request_body(body(data))  # the admission ends after its line
    await limited.tasks.drain()
    assert await used(limited, store, clock) == 0
    assert len(limited.pending) == 0
