"""The usage filter's lifecycle: response headers, body chunks, end or early end."""

from __future__ import annotations

import dataclasses

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.extproc.attributes import ATTRIBUTES_KEY
from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.extproc.services import Services
from policy_sidecar.extproc.usage_stream import UsageObserver
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.providers import Route, Usage
from policy_sidecar.usage.bounds import bound_record
from tests.conftest import FakeClock, ListRecorder
from tests.extproc.messages import body, headers, with_metadata

USAGE = Usage(prompt_tokens=9, completion_tokens=5, total_tokens=14, cached_tokens=2)
ROUTE = Route("openai", "chat")


def sse_chunks(request: dict[str, object]) -> list[bytes]:
    return list(build_response(ROUTE, request, USAGE, text="one two three four five").chunks)


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
        started_at=FakeClock().now,
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
    return {**base.to_metadata(), **kw}


def req_headers_msg(md: dict[str, object] | None = None) -> pb.ProcessingRequest:
    msg = pb.ProcessingRequest(
        request_headers=headers({":method": "POST"}), observability_mode=True
    )
    return with_metadata(msg, md) if md is not None else msg


def resp_headers_msg(
    status: int, content_type: str, *, eos: bool = False, extra: dict[str, str] | None = None
) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(
        response_headers=headers(
            {":status": str(status), "content-type": content_type, **(extra or {})},
            end_of_stream=eos,
        ),
        observability_mode=True,
    )


def chunk_msg(data: bytes, *, eos: bool = False) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(
        response_body=body(data, end_of_stream=eos), observability_mode=True
    )


async def test_streamed_response_records_usage_and_timing(
    services: Services, recorder: ListRecorder, clock: FakeClock
) -> None:
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover()))
    obs.on_message(resp_headers_msg(200, "text/event-stream"))
    chunks = sse_chunks(REQUEST)
    clock.advance(0.25)
    for c in chunks:
        obs.on_message(chunk_msg(c))
        clock.advance(0.01)
    obs.on_message(chunk_msg(b"", eos=True))
    assert obs.done
    obs.close()  # closing after completion records nothing more
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens, r.cached_tokens) == (9, 5, 14, 2)
    assert r.usage_reported and r.streamed
    assert (r.decision, r.status_code, r.app_id, r.request_id) == ("allow", 200, "app1", "rid-9")
    assert r.response_bytes == sum(len(c) for c in chunks)
    assert r.ttft_ms is not None and abs(r.ttft_ms - 250.0) < 1e-6
    assert r.latency_ms is not None and r.latency_ms > r.ttft_ms
    assert r.estimated_tokens == 11


async def test_json_response_records_usage(services: Services, recorder: ListRecorder) -> None:
    request = {**REQUEST, "stream": False}
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover()))
    obs.on_message(resp_headers_msg(200, "application/json"))
    data = build_response(ROUTE, request, USAGE).body
    obs.on_message(chunk_msg(data[:10]))
    obs.on_message(chunk_msg(data[10:], eos=True))
    await services.tasks.drain()
    [r] = recorder.records
    assert r.total_tokens == 14
    assert not r.streamed


async def test_stream_cut_short_is_charged_what_it_delivered(
    services: Services, recorder: ListRecorder
) -> None:
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover()))
    obs.on_message(resp_headers_msg(200, "text/event-stream"))
    chunks = sse_chunks(REQUEST)
    for c in chunks[:4]:  # role, "one", " two", " three"; then the client is gone
        obs.on_message(chunk_msg(c))
    obs.close()
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.usage_reported) == ("incomplete", False)  # False: estimated
    # The prompt estimate, plus the delivered text counted by the tokenizer.
    assert (r.prompt_tokens, r.completion_tokens, r.total_tokens) == (11, 3, 14)
    assert r.estimated_tokens == 11


async def test_complete_stream_without_usage_is_charged_what_it_delivered(
    services: Services, recorder: ListRecorder
) -> None:
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover()))
    obs.on_message(resp_headers_msg(200, "text/event-stream"))
    chunks = sse_chunks(REQUEST)
    for c in chunks[:-2]:  # no usage chunk (include_usage was not asked for)
        obs.on_message(chunk_msg(c))
    obs.on_message(chunk_msg(chunks[-1], eos=True))
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.usage_reported) == ("allow", False)
    assert (r.prompt_tokens, r.completion_tokens) == (11, 5)


async def test_client_gone_before_response_is_incomplete(
    services: Services, recorder: ListRecorder
) -> None:
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover()))
    obs.close()
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.status_code, r.app_id) == ("incomplete", 0, "app1")


async def test_error_response_yields_no_usage(services: Services, recorder: ListRecorder) -> None:
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover()))
    obs.on_message(resp_headers_msg(500, "application/json"))
    obs.on_message(chunk_msg(b'{"error": {"message": "boom"}}', eos=True))
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.status_code, r.usage_reported) == ("allow", 500, False)


async def test_denied_request_is_not_recorded_twice(
    services: Services, recorder: ListRecorder
) -> None:
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover(rec=True)))
    assert obs.done
    obs.on_message(resp_headers_msg(403, "application/json", eos=True))
    obs.close()
    await services.tasks.drain()
    assert recorder.records == []


async def test_response_without_policy_metadata_is_an_error_record(
    services: Services, recorder: ListRecorder
) -> None:
    obs = UsageObserver(services)
    obs.on_message(resp_headers_msg(503, "text/plain", eos=True))
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.status_code, r.app_id) == ("error", 503, None)


async def test_headers_only_response(services: Services, recorder: ListRecorder) -> None:
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover(prov=None, op=None)))
    obs.on_message(resp_headers_msg(204, "", eos=True))
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.status_code, r.response_bytes) == ("allow", 204, 0)


async def test_an_error_envoy_answered_is_recorded_with_its_cause(
    services: Services, recorder: ListRecorder
) -> None:
    # The policy filter allowed it, then Envoy had no such cluster: not "allow".
    obs = UsageObserver(services)
    obs.on_message(req_headers_msg(handover()))
    error = {ERROR_HEADER: "upstream_not_configured"}
    obs.on_message(resp_headers_msg(503, "application/json", extra=error))
    obs.on_message(chunk_msg(b'{"error": {"code": "upstream_not_configured"}}', eos=True))
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.status_code, r.denied_by) == ("error", 503, "upstream_not_configured")
    assert (r.request_id, r.app_id, r.requested_model) == ("rid-9", "app1", "gpt-4o-mini")


async def test_an_error_before_the_handover_keeps_envoys_request_id(
    services: Services, recorder: ListRecorder
) -> None:
    obs = UsageObserver(services)
    msg = resp_headers_msg(
        431, "application/json", eos=True, extra={ERROR_HEADER: "request_header_fields_too_large"}
    )
    msg.attributes[ATTRIBUTES_KEY].update({"request.id": "envoy-rid-1"})
    obs.on_message(msg)
    await services.tasks.drain()
    [r] = recorder.records
    assert (r.decision, r.request_id, r.denied_by) == (
        "error",
        "envoy-rid-1",
        "request_header_fields_too_large",
    )


async def test_an_error_envoy_answered_alone_has_no_negative_times(
    services: Services, recorder: ListRecorder
) -> None:
    # No handover: the request's start is when the usage filter first heard of it, so
    # the time to first byte and the latency are never negative (nor flagged as out of
    # range by the recorder's bounds).
    clock = FakeClock()
    obs = UsageObserver(dataclasses.replace(services, clock=clock))
    msg = resp_headers_msg(503, "application/json", extra={ERROR_HEADER: "upstream_reset"})
    obs.on_message(msg)
    clock.now += 0.25
    obs.on_message(chunk_msg(b'{"error": {"code": "upstream_reset"}}'))
    clock.now += 0.25
    obs.on_message(chunk_msg(b"", eos=True))
    await services.tasks.drain()
    [r] = recorder.records
    assert r.ttft_ms == 250.0
    assert r.latency_ms == 500.0
    assert bound_record(r).usage_flags == ()
