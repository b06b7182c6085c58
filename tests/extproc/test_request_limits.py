"""Bodies that are valid JSON but no request: 400 in the provider's shape, never a 500.

Each case once answered 500 with a traceback (OverflowError from a 400-digit max_tokens,
RecursionError from deep nesting) and was recorded as ``error`` with no app.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.extproc.handover import facts_from_struct
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.responses import METADATA_NAMESPACE
from policy_sidecar.extproc.server import ExternalProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.providers import MAX_NESTING_DEPTH, MAX_TOKEN_COUNT, ParsedRequest
from policy_sidecar.providers.registry import ProviderRegistry
from policy_sidecar.tokens import TokenEstimator, load_estimator
from tests.conftest import KEY, ListRecorder
from tests.extproc.drive import ROUTES, drive, error_in_shape, limit_services
from tests.extproc.messages import body, request_headers

HUGE = 10**400
HELLO = [{"role": "user", "content": "hi"}]


def chat(**extra: Any) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": HELLO, **extra}).encode()


def nested(depth: int, *, stream: bool = False) -> bytes:
    """A chat request whose extra field nests arrays ``depth`` levels below the body."""
    head = json.dumps({"model": "gpt-4o-mini", "messages": HELLO, "stream": stream})[:-1]
    return f'{head}, "metadata": {"[" * depth}{"]" * depth}}}'.encode()


CASES: list[tuple[str, str, bytes, str]] = [
    ("openai max_tokens 400 digits", "openai-chat", chat(max_tokens=HUGE), "'max_tokens'"),
    (
        "openai max_completion_tokens over the ceiling",
        "openai-chat",
        chat(max_completion_tokens=MAX_TOKEN_COUNT + 1),
        f"'max_completion_tokens' must be at most {MAX_TOKEN_COUNT}",
    ),
    ("max_tokens true", "openai-chat", chat(max_tokens=True), "got boolean"),
    ("max_tokens 1e400", "openai-chat", b'{"model":"m","messages":[],"max_tokens":1e400}', "1e400"),
    ("temperature 1e400", "openai-chat", chat()[:-1] + b',"temperature":1e400}', "out of range"),
    (
        "temperature 5,001 digits",
        "openai-chat",
        chat()[:-1] + b',"temperature":' + b"1" * 5001 + b"}",
        "a number in the body has too many digits",
    ),
    ("n 400 digits", "openai-chat", chat(n=HUGE), "'n' must be an integer from 1 to 128"),
    ("n zero", "openai-chat", chat(n=0), "'n' must be an integer from 1 to 128"),
    ("temperature NaN", "openai-chat", chat()[:-1] + b',"temperature":NaN}', "NaN"),
    (
        "responses max_output_tokens",
        "openai-responses",
        json.dumps({"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": HUGE}).encode(),
        "'max_output_tokens'",
    ),
    (
        "anthropic max_tokens 400 digits",
        "anthropic",
        json.dumps({"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": HUGE}).encode(),
        "'max_tokens'",
    ),
    (
        "gemini maxOutputTokens 400 digits",
        "gemini",
        json.dumps(
            {
                "contents": [{"parts": [{"text": "hi"}]}],
                "generationConfig": {"maxOutputTokens": HUGE},
            }
        ).encode(),
        "'generationConfig.maxOutputTokens'",
    ),
    (
        "cohere max_tokens 400 digits",
        "cohere-v2",
        json.dumps({"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": HUGE}).encode(),
        "'max_tokens'",
    ),
    ("nesting 5,000", "openai-chat", nested(5000), "nests deeper than 128"),
    ("nesting 990 streamed", "openai-chat", nested(990, stream=True), "nests deeper than 128"),
    ("nesting 129", "openai-chat", nested(MAX_NESTING_DEPTH), "nests deeper than 128"),
    (
        "anthropic nesting 5,000",
        "anthropic",
        b'{"model":"gpt-4o-mini","max_tokens":5,"messages":' + b"[" * 5000 + b"]" * 5000 + b"}",
        "nests deeper than 128",
    ),
    ("model lone surrogate", "openai-chat", chat()[:-1] + b',"model":"\\ud800"}', "'model'"),
    ("model 300 characters", "openai-chat", chat(model="m" * 300), "at most 256 characters"),
]


@pytest.fixture(scope="module")
def estimator() -> Iterator[TokenEstimator]:
    loaded = load_estimator()
    yield loaded
    loaded.close()


@pytest.fixture
def limited(recorder: ListRecorder, estimator: TokenEstimator) -> Services:
    return limit_services(recorder, estimator)


@pytest.mark.parametrize(
    ("route", "data", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_valid_json_that_is_no_request_is_400_for_the_app(
    limited: Services, recorder: ListRecorder, route: str, data: bytes, fragment: str
) -> None:
    response = await drive(limited, ROUTES[route], data)
    immediate = response.immediate_response
    assert immediate.status.code == 400
    error = error_in_shape(route, 400, immediate.body)
    assert fragment in error["message"]
    [record] = recorder.records
    assert (record.decision, record.status_code) == ("deny", 400)
    assert (record.app_id, record.org_id, record.environment) == ("app1", "org1", "dev")
    assert record.provider == route.partition("-")[0]


def handover_of(response: pb.ProcessingResponse) -> RequestFacts:
    md = response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value
    found = facts_from_struct(md)
    assert found is not None
    return found


@pytest.mark.parametrize("route", ["openai-chat", "anthropic", "gemini"])
async def test_largest_token_count_passes_every_policy(limited: Services, route: str) -> None:
    data = {
        "openai-chat": chat(max_tokens=MAX_TOKEN_COUNT, stream=True),
        "anthropic": json.dumps(
            {"model": "claude-haiku-4-5", "messages": HELLO, "max_tokens": MAX_TOKEN_COUNT}
        ).encode(),
        "gemini": json.dumps(
            {
                "contents": [{"parts": [{"text": "hi"}]}],
                "generationConfig": {"maxOutputTokens": MAX_TOKEN_COUNT},
            }
        ).encode(),
    }[route]
    response = await drive(limited, ROUTES[route], data)
    assert response.WhichOneof("response") == "request_body"
    assert handover_of(response).max_tokens == MAX_TOKEN_COUNT


async def test_nesting_at_the_limit_passes_and_is_re_serialised(limited: Services) -> None:
    # One level for the body itself: the metadata array may nest one less.
    data = nested(MAX_NESTING_DEPTH - 1, stream=True)
    response = await drive(limited, ROUTES["openai-chat"], data)
    common = response.request_body.response
    sent = json.loads(common.body_mutation.body)  # stream_options.include_usage added
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["metadata"] == json.loads(data)["metadata"]


class BrokenEstimator:
    """A bug in the body phase after the caller is known."""

    def __init__(self, real: TokenEstimator) -> None:
        self._real = real

    async def estimate_async(self, provider: str, parsed: ParsedRequest) -> int:
        raise ZeroDivisionError("a bug")


@pytest.fixture
async def broken_stub(
    recorder: ListRecorder, estimator: TokenEstimator
) -> AsyncIterator[pb_grpc.ExternalProcessorStub]:
    services = limit_services(recorder, BrokenEstimator(estimator))  # type: ignore[arg-type]
    server = grpc.aio.server()
    pb_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessor(services), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.ExternalProcessorStub(channel)
    await server.stop(None)


async def test_unexpected_failure_is_500_in_shape_and_recorded_for_the_app(
    broken_stub: pb_grpc.ExternalProcessorStub, recorder: ListRecorder
) -> None:
    data = json.dumps({"model": "claude-haiku-4-5", "messages": HELLO, "max_tokens": 5}).encode()
    call = broken_stub.Process()
    headers = request_headers(KEY, path=ROUTES["anthropic"], body=data)
    await call.write(pb.ProcessingRequest(request_headers=headers))
    assert (await call.read()).WhichOneof("response") == "request_headers"
    await call.write(pb.ProcessingRequest(request_body=body(data)))
    response = await call.read()
    immediate = response.immediate_response
    assert immediate.status.code == 500
    error = error_in_shape("anthropic", 500, immediate.body)
    assert error["type"] == "internal_error"
    assert handover_of(response).recorded  # the usage filter will not record it again
    [record] = recorder.records
    assert (record.decision, record.status_code) == ("error", 500)
    assert (record.app_id, record.org_id, record.provider) == ("app1", "org1", "anthropic")
    assert record.requested_model == "claude-haiku-4-5"


class PatchFails:
    """OpenAI's parser, but building the upstream body fails (after the reservation)."""

    def __init__(self) -> None:
        from policy_sidecar.providers.openai import OpenAIProvider

        self._inner = OpenAIProvider()
        self.name = self._inner.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def request_patch(self, route: Any, body: Any) -> dict[str, Any] | None:
        raise RuntimeError("a bug")


def token_counters(counters: InMemoryCounterStore) -> list[int]:
    values = counters._values.items()
    return [value for key, (value, _) in values if "p-tokens" in key or "p-cost" in key]


async def test_failure_after_admission_gives_the_reservation_back(
    recorder: ListRecorder, estimator: TokenEstimator
) -> None:
    counters = InMemoryCounterStore()
    broken = limit_services(
        recorder,
        estimator,
        providers=ProviderRegistry([PatchFails()]),  # type: ignore[list-item]
        counters=counters,
    )
    data = chat(max_tokens=100)
    processor = PolicyProcessor(broken)
    await processor.on_request_headers(request_headers(KEY, body=data))
    with pytest.raises(RuntimeError):
        await processor.on_request_body(body(data))
    reserved = token_counters(counters)
    assert len(reserved) == 2
    assert all(value > 0 for value in reserved)
    response = processor.on_failure()
    assert response.immediate_response.status.code == 500
    await broken.tasks.drain()
    assert token_counters(counters) == [0, 0]
    [record] = recorder.records
    assert (record.decision, record.app_id) == ("error", "app1")
