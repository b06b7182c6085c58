"""Usage records from Envoy's access log lines: what the response delivered, how it ended."""

from __future__ import annotations

import json
from collections.abc import Callable

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.envoy.access_log import LogEntry
from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.extproc.completion import Completer
from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.extproc.services import Services
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy.account_limits import account_key
from policy_sidecar.providers import Route, Usage
from policy_sidecar.usage.bounds import bound_record
from policy_sidecar.usage.metering import metered
from policy_sidecar.usage.record import UsageRecord
from tests.conftest import FakeClock
from tests.extproc.access_lines import capture, entry, line

USAGE = Usage(prompt_tokens=9, completion_tokens=5, total_tokens=14, cached_tokens=2)
ROUTE = Route("openai", "chat")
T0 = FakeClock().now
SSE = "text/event-stream"


def sse_chunks(request: dict[str, object], text: str = "one two three four five") -> list[bytes]:
    return list(build_response(ROUTE, request, USAGE, text=text).chunks)


REQUEST = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Say hello"}],
    "max_tokens": 5,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def handover(**kw: object) -> dict[str, object]:
    base = RequestFacts(
        request_id="rid-9",
        started_at=T0,
        app_id="app1",
        org_id="org1",
        environment="dev",
        key_id="k1",
        provider="openai",
        operation="chat",
        requested_model="gpt-4o-mini",
        served_model="gpt-4o-mini",
        estimated_tokens=11,
        request_bytes=120,
    )
    return {**base.to_metadata(), "w": "50051", **kw}


async def complete(services: Services, md: dict[str, object] | None, **kw: object) -> UsageRecord:
    kw.setdefault("started_at", T0)
    record = await Completer(services).complete(entry(md, **kw))
    assert record is not None
    return record


async def test_streamed_response_records_usage_and_timing(services: Services) -> None:
    chunks = sse_chunks(REQUEST)
    r = await complete(
        services,
        handover(),
        content_type=SSE,
        chunks=chunks,
        first_byte_at=T0 + 0.25,
        duration_ms=400,
    )
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens, r.cached_tokens) == (9, 5, 14, 2)
    assert r.usage_reported and r.streamed
    assert (r.decision, r.status_code, r.app_id, r.request_id) == ("allow", 200, "app1", "rid-9")
    assert r.response_bytes == sum(len(c) for c in chunks)
    assert r.ttft_ms is not None and abs(r.ttft_ms - 250.0) < 1e-3
    assert r.latency_ms is not None and abs(r.latency_ms - 400.0) < 1e-3
    assert r.estimated_tokens == 11


async def test_a_long_stream_is_read_from_its_head_and_tail(services: Services) -> None:
    # Far more than head + tail: the usage chunk is in the tail.
    chunks = sse_chunks(REQUEST, text=" ".join(["word"] * 3000))
    assert sum(len(c) for c in chunks) > 100_000
    r = await complete(services, handover(), content_type=SSE, chunks=chunks)
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens) == (9, 5, 14)
    assert r.usage_reported


async def test_json_response_records_usage(services: Services) -> None:
    data = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    r = await complete(services, handover(), chunks=[data[:10], data[10:]])
    assert r.total_tokens == 14
    assert not r.streamed
    # Metered as it is built: the recorder's `metered` then keeps it as it is.
    assert (r.unit, r.quantity) == ("tokens", 14.0)
    assert metered(r) is r


async def test_the_account_that_answered_is_recorded(services: Services) -> None:
    data = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    r = await complete(services, handover(), chunks=[data], account="openai-spare")
    assert r.upstream_account == "openai-spare"
    assert r.to_json_dict()["upstream_account"] == "openai-spare"
    assert UsageRecord.from_json_dict(r.to_json_dict()) == r
    # No account cluster (a static cluster, or Envoy answered alone): none recorded.
    for account in (None, "-"):
        plain = await complete(services, handover(), chunks=[data], account=account)
        assert plain.upstream_account is None


async def test_a_group_models_answer_is_charged_to_the_answering_accounts_quotas(
    make_services: Callable[..., Services],
    counters: InMemoryCounterStore,
    penalties: InMemoryPenaltyBox,
    clock: FakeClock,
) -> None:
    spare = ProviderAccount(
        name="openai-spare",
        provider="openai",
        base_host="api.openai.com",
        credential_ref="spare",
        tokens_per_minute=1_000,
        requests_per_minute=10,
    )
    enforcer = Enforcer(counters, penalties, clock, accounts={"openai-spare": spare})
    services = make_services(enforcer=enforcer)
    data = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    # gpt-4o-mini is on no account (as on a group): nothing was reserved on spare's.
    await complete(services, handover(), chunks=[data], account="openai-spare")
    used = {key: value for key, (value, _) in counters._values.items()}
    assert len(used) == 2, used  # spare's requests and tokens
    tokens = next(k for k in used if k.startswith(account_key("openai-spare", "tokens") + ":"))
    requests = next(k for k in used if k.startswith(account_key("openai-spare", "requests") + ":"))
    assert (used[tokens], used[requests]) == (USAGE.total_tokens, 1)
    # An error answer is not charged (the provider refused it); nor an unknown account.
    await complete(services, handover(), chunks=[b"{}"], status=429, account="openai-spare")
    await complete(services, handover(), chunks=[data], account="ghost")
    assert counters.bucket_count() == 2


async def test_stream_cut_short_is_charged_what_it_delivered(services: Services) -> None:
    chunks = sse_chunks(REQUEST)
    # role, "one", " two", " three"; then the client is gone
    r = await complete(
        services, handover(), content_type=SSE, chunks=chunks[:4], ended=False, flags="DC"
    )
    assert (r.decision, r.usage_reported) == ("incomplete", False)  # False: estimated
    # The prompt estimate, plus the delivered text counted by the tokenizer.
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens) == (11, 3, 14)
    assert r.estimated_tokens == 11


async def test_a_long_stream_cut_short_is_charged_by_extrapolation(services: Services) -> None:
    words = 3000
    chunks = sse_chunks(REQUEST, text=" ".join(["word"] * words))
    cut = chunks[: len(chunks) // 2]
    request = {**handover(), "mt": 100_000}
    r = await complete(services, request, content_type=SSE, chunks=cut, ended=False, flags="DC")
    assert r.decision == "incomplete" and not r.usage_reported
    # About half the words were delivered: the head and tail's text, scaled by bytes.
    assert 0.8 * words / 2 <= r.completion_tokens <= 1.2 * words / 2


async def test_a_short_stream_cut_between_two_saves_is_charged_what_envoy_sent(
    services: Services,
) -> None:
    """The Lua capture saves every 16 chunks: a small stream cut at chunk 30 leaves a
    capture of 16 chunks that covers its body whole, while Envoy's bytes sent say 30.
    The text read is scaled to the bytes sent, as for a window."""
    words = 40
    chunks = sse_chunks(REQUEST, text=" ".join(["word"] * words))
    sent, saved = chunks[:30], chunks[:16]
    raw = json.loads(
        line(handover(), content_type=SSE, chunks=sent, ended=False, flags="DC", started_at=T0)
    )
    raw["r"] = capture(saved, ended=False)
    assert len(raw["r"]["t"]) * 3 // 4 >= sum(map(len, saved))  # the capture is whole
    r = await Completer(services).complete(LogEntry.from_line(json.dumps(raw).encode()))
    assert r is not None and r.decision == "incomplete" and not r.usage_reported
    # sse_chunks: a role chunk, then one word per chunk: 29 words went out.
    assert 0.85 * 29 <= r.completion_tokens <= 1.15 * 29
    assert r.response_bytes == sum(map(len, sent))


async def test_complete_stream_without_usage_is_charged_what_it_delivered(
    services: Services,
) -> None:
    chunks = sse_chunks(REQUEST)
    # no usage chunk (include_usage was not asked for)
    r = await complete(services, handover(), content_type=SSE, chunks=[*chunks[:-2], chunks[-1]])
    assert (r.decision, r.usage_reported) == ("allow", False)
    assert (r.prompt_tokens, r.completion_tokens) == (11, 5)


async def test_client_gone_before_response_is_incomplete(services: Services) -> None:
    r = await complete(services, handover(), status=0, lua=False, flags="DC")
    assert (r.decision, r.status_code, r.app_id) == ("incomplete", 0, "app1")


async def test_error_response_yields_no_usage(services: Services) -> None:
    r = await complete(services, handover(), status=500, chunks=[b'{"error": {"message": "x"}}'])
    assert (r.decision, r.status_code, r.usage_reported) == ("allow", 500, False)


async def test_denied_request_is_not_recorded_twice(services: Services) -> None:
    line = entry(handover(rec=True), status=403)
    assert await Completer(services).complete(line) is None


async def test_response_without_policy_metadata_is_an_error_record(services: Services) -> None:
    r = await complete(services, None, status=503, content_type="text/plain")
    assert (r.decision, r.status_code, r.app_id) == ("error", 503, None)


async def test_headers_only_response(services: Services) -> None:
    r = await complete(services, handover(prov=None, op=None), status=204, content_type="")
    assert (r.decision, r.status_code, r.response_bytes) == ("allow", 204, 0)


async def test_an_error_envoy_answered_is_recorded_with_its_cause(services: Services) -> None:
    # The policy filter allowed it, then Envoy had no such cluster: not "allow".
    body = b'{"error": {"code": "upstream_not_configured"}}'
    r = await complete(
        services, handover(), status=503, chunks=[body], error="upstream_not_configured"
    )
    assert (r.decision, r.status_code, r.denied_by) == ("error", 503, "upstream_not_configured")
    assert (r.request_id, r.app_id, r.requested_model) == ("rid-9", "app1", "gpt-4o-mini")
    assert ERROR_HEADER == "x-policy-sidecar-error"  # the header the log line reads


async def test_a_provider_cannot_pass_its_answer_off_as_an_envoy_error(
    services: Services,
) -> None:
    """The error header on an answer that came from upstream (Envoy's details say
    "via_upstream") is the provider's: the answer is recorded with its usage as served,
    not as an error with the cause the provider chose."""
    data = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    r = await complete(
        services, handover(), chunks=[data], error="upstream_reset", details="via_upstream"
    )
    assert (r.decision, r.denied_by, r.total_tokens) == ("allow", None, USAGE.total_tokens)


async def test_an_error_before_the_handover_keeps_envoys_request_id(services: Services) -> None:
    r = await complete(
        services,
        None,
        status=431,
        request_id="envoy-rid-1",
        error="request_header_fields_too_large",
    )
    assert (r.decision, r.request_id, r.denied_by) == (
        "error",
        "envoy-rid-1",
        "request_header_fields_too_large",
    )


async def test_an_error_envoy_answered_alone_has_no_negative_times(services: Services) -> None:
    # No handover: the request's start is Envoy's, so the time to first byte and the
    # latency are never negative (nor flagged as out of range by the recorder's bounds).
    r = await complete(
        services,
        None,
        status=503,
        chunks=[b'{"error": {"code": "upstream_reset"}}'],
        error="upstream_reset",
        first_byte_at=T0 + 0.25,
        duration_ms=500,
    )
    assert r.ttft_ms is not None and abs(r.ttft_ms - 250.0) < 1e-3
    assert r.latency_ms is not None and abs(r.latency_ms - 500.0) < 1e-3
    assert bound_record(r).usage_flags == ()


async def test_a_compressed_body_is_decoded_when_whole(services: Services) -> None:
    import gzip

    data = build_response(ROUTE, {**REQUEST, "stream": False}, USAGE).body
    r = await complete(services, handover(), chunks=[gzip.compress(data)], encoding="gzip")
    assert (r.total_tokens, r.usage_reported) == (14, True)
