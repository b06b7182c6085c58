"""Usage an upstream reports beyond any bound is clamped before it settles a counter
or becomes a record (in-memory and real Redis counters)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.counters.redis_store import RedisCounterStore
from policy_sidecar.counters.store import CounterStore
from policy_sidecar.counters.values import CounterOp, Window, WindowUnit
from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.extproc.services import Services
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.limits.enforcer import Charge, Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.providers import Route, Usage
from policy_sidecar.tokens import count_text
from tests.conftest import FakeClock, ListRecorder
from tests.extproc.access_lines import entry as log_entry

MINUTE = Window(WindowUnit.MINUTE)
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
OTHERS = 300  # what other requests of the application already used in the bucket


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


def body(prompt: int, completion: int, total: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    return json.dumps(
        {"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini", "usage": usage}
    ).encode()


@pytest.mark.parametrize(
    ("reported", "max_tokens", "kept", "flags"),
    [
        ((10, 5, 4 * 10**18), 256, (10, 5, 15), ("total_capped",)),
        # A negative prompt is charged the estimate (11), never 0.
        ((-1005, 5, -1000), 256, (11, 5, 16), ("usage_negative",)),
        ((10, 5000, 5010), 256, (10, 256, 266), ("completion_capped", "total_capped")),
        # No context window in the test catalog: the cap is max(estimate x 16, 32768).
        ((10**30, 5, 10**30), None, (32_768, 5, 32_773), ("prompt_capped", "total_capped")),
    ],
)
async def test_out_of_bounds_usage_is_clamped_settled_and_flagged(
    make_services: Callable[..., Services],
    recorder: ListRecorder,
    clock: FakeClock,
    store: CounterStore,
    reported: tuple[int, int, int],
    max_tokens: int | None,
    kept: tuple[int, int, int],
    flags: tuple[str, ...],
) -> None:
    services = make_services(enforcer=Enforcer(store, InMemoryPenaltyBox(), clock))
    key = f"pstest-{uuid.uuid4().hex[:12]}:{{app}}:tok"
    await store.check_and_add([CounterOp(key, 10**6, MINUTE, OTHERS)], clock.now)
    reserved = await store.check_and_add([CounterOp(key, 10**6, MINUTE, 50)], clock.now)
    assert reserved.reservation is not None
    entry = reserved.reservation.entries[0]
    handover = RequestFacts(
        request_id="rid-1",
        started_at=clock.now,
        app_id="app1",
        org_id="org1",
        environment="dev",
        key_id="k1",
        provider="openai",
        operation="chat",
        requested_model="gpt-4o-mini",
        served_model="gpt-4o-mini",
        estimated_tokens=11,
        max_tokens=max_tokens,
        charges=(Charge(key, MINUTE, entry.bucket_start, 50, "total"),),
    )
    r = await Completer(services).complete(
        log_entry(handover.to_metadata(), chunks=[body(*reported)], started_at=clock.now)
    )
    assert r is not None
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens) == kept
    assert r.usage_flags == flags
    probe = await store.check_and_add([CounterOp(key, 10**6, MINUTE, 0)], clock.now + 1)
    assert probe.states[0].used == OTHERS + kept[2]  # nobody else's share moved
    assert r.usage_reported is (reported[0] >= 0 and reported[1] >= 0)


TEXT = "one two three four five six seven eight nine ten"
CHAT_ROUTE = Route("openai", "chat")
MESSAGES_ROUTE = Route("anthropic", "messages")
QUESTION = [{"role": "user", "content": "Count to ten."}]


def answer_chunks(route: Route, usage: Usage, *, stream: bool) -> list[bytes]:
    request: dict[str, object] = {"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 64}
    if stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return list(build_response(route, request, usage, text=TEXT).chunks)


@pytest.mark.parametrize(
    ("route", "stream", "cut", "reported", "prompt_is_estimate", "completion_is_delivered"),
    [
        (CHAT_ROUTE, False, False, Usage(-1005, 7, -998), True, False),
        (CHAT_ROUTE, False, False, Usage(9, -10, -1), False, True),
        (CHAT_ROUTE, True, False, Usage(-1005, -10, -1015), True, True),
        (MESSAGES_ROUTE, False, False, Usage(9, -10, -1), False, True),
        (MESSAGES_ROUTE, True, False, Usage(-50, 7, -43), True, False),
        # Cut after Anthropic's message_start (its prompt count): the partial report's
        # prompt is the estimate, the completion what was delivered.
        (MESSAGES_ROUTE, True, True, Usage(-50, 7, -43), True, None),
    ],
    ids=[
        "json-prompt",
        "json-completion",
        "sse-both",
        "anthropic-json",
        "anthropic-sse",
        "anthropic-sse-cut",
    ],
)
async def test_a_rejected_count_is_charged_the_estimate_not_zero(
    make_services: Callable[..., Services],
    clock: FakeClock,
    store: CounterStore,
    route: Route,
    stream: bool,
    cut: bool,
    reported: Usage,
    prompt_is_estimate: bool,
    completion_is_delivered: bool | None,
) -> None:
    """The prompt: the sidecar's estimate (11 here); the completion: the text the
    answer delivered, counted with the tokenizer (10 tokens); the counters settle to
    the same, and the record keeps the flag and says the usage is not reported."""
    services = make_services(enforcer=Enforcer(store, InMemoryPenaltyBox(), clock))
    key = f"pstest-{uuid.uuid4().hex[:12]}:{{app}}:tok"
    reserved = await store.check_and_add([CounterOp(key, 10**6, MINUTE, 50)], clock.now)
    assert reserved.reservation is not None
    handover = RequestFacts(
        request_id="rid-neg",
        started_at=clock.now,
        app_id="app1",
        org_id="org1",
        environment="dev",
        provider=route.provider,
        operation=route.operation,
        requested_model="gpt-4o-mini",
        served_model="gpt-4o-mini",
        stream=stream,
        estimated_tokens=11,
        max_tokens=64,
        charges=(Charge(key, MINUTE, reserved.reservation.entries[0].bucket_start, 50, "total"),),
    )
    chunks = answer_chunks(route, reported, stream=stream)
    r = await Completer(services).complete(
        log_entry(
            handover.to_metadata(),
            chunks=chunks[:4] if cut else chunks,
            ended=not cut,
            content_type="text/event-stream" if stream else "application/json",
            started_at=clock.now,
        )
    )
    assert r is not None
    delivered = count_text(services.estimator.encoding(route.provider, "gpt-4o-mini"), TEXT)
    assert delivered == 10
    assert r.prompt_tokens == (11 if prompt_is_estimate else reported.prompt_tokens)
    if completion_is_delivered is not None:
        expected = delivered if completion_is_delivered else reported.completion_tokens
        assert r.completion_tokens == expected
    assert r.total_tokens == r.prompt_tokens + r.completion_tokens > 11
    assert "usage_negative" in r.usage_flags and not r.usage_reported
    probe = await store.check_and_add([CounterOp(key, 10**6, MINUTE, 0)], clock.now + 1)
    assert probe.states[0].used == r.total_tokens  # charged the estimate, not 0
