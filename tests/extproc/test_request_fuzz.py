"""Every request parser, through the real processor, on arbitrary JSON and bytes.

Whatever the body, the policy filter answers with CONTINUE (the body parsed and passed
the policies) or an immediate 4xx whose body is that provider's error shape: never a
5xx, never an exception. Each example goes through every route (all nine request
parsers), so each parser sees 500 JSON and 500 byte examples: generating an example
costs several times more than processing it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from policy_sidecar.extproc.services import Services
from policy_sidecar.tokens import TokenEstimator, load_estimator
from tests.conftest import ListRecorder
from tests.extproc.drive import ROUTES, drive, error_in_shape, limit_services

FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEYS = [
    "model",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "messages",
    "stream",
    "stream_options",
    "include_usage",
    "role",
    "content",
    "type",
    "text",
    "refusal",
    "input",
    "prompt",
    "suffix",
    "tools",
    "functions",
    "response_format",
    "json_schema",
    "system",
    "contents",
    "parts",
    "generationConfig",
    "maxOutputTokens",
    "systemInstruction",
    "message",
    "chat_history",
    "preamble",
    "documents",
    "texts",
    "inputs",
    "images",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "tool_result",
    "tool_use",
    "image_url",
    "instructions",
    "output",
    "functionCall",
    "functionResponse",
    "inlineData",
    "tool_plan",
    "tool_results",
    "thinking",
]
WORDS = [
    "gpt-4o-mini",
    "fast",
    "user",
    "assistant",
    "system",
    "text",
    "image",
    "image_url",
    "input_text",
    "tool_use",
    "tool_result",
    "thinking",
    "message",
    "function_call",
    "function_call_output",
    "refusal",
    "USER",
]
SPECIAL_NUMBERS = [10**400, -(10**400), 2**31 - 1, 2**31, 2**63, -1, 0, 1, 0.5, 1e308]
SPECIAL_NUMBERS += [float("inf"), float("nan")]  # json.dumps writes bare Infinity, NaN

# Lean strategies: generating the examples costs more than processing them.
words = st.sampled_from([*WORDS, "", "\ud800", "a\udfff"])
texts = words | st.text(max_size=6)
numbers = st.sampled_from(SPECIAL_NUMBERS) | st.integers() | st.floats(width=32)
scalars = st.none() | st.booleans() | numbers | texts
keys = st.sampled_from(KEYS)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys | texts, inner, max_size=3),
    max_leaves=6,
)
parts = st.lists(
    st.fixed_dictionaries({"type": words}, optional={"text": texts, "content": values}),
    max_size=2,
)
message = st.fixed_dictionaries(
    {"role": words}, optional={"content": texts | parts, "parts": parts, "message": texts}
)
fields = st.one_of(values, st.lists(message, max_size=2), numbers, words, texts | parts)
plausible = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "fast"]) | texts},
    optional={
        "messages": st.lists(message, max_size=3),
        "contents": st.lists(message, max_size=3),
        "generationConfig": st.fixed_dictionaries({"maxOutputTokens": numbers}),
    },
).flatmap(lambda head: st.dictionaries(keys, fields, max_size=4).map(lambda tail: tail | head))


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    body: Any = draw(st.one_of(plausible, plausible, plausible, values))
    text = json.dumps(body)
    depth = draw(st.sampled_from([0, 0, 0, 127, 128, 990, 5000]))
    if depth and isinstance(body, dict):
        # Deep nesting is written as text: building it as objects would itself recurse.
        nest = "[" * depth + "]" * depth
        text = text[:-1] + ("," if body else "") + f'"nested": {nest}}}'
    return text.encode()


JSON_PIECES = [b"{", b"}", b"[", b"]", b":", b",", b'"model"', b'"max_tokens"', b'"messages"']
JSON_PIECES += [b'"x"', b"1e400", b"-", b"0", b"NaN", b"true", b"null", b'"\\ud800"', b"\xff", b" "]
raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),
    # Near-JSON: the pieces of a request body in any order, unbalanced, cut anywhere.
    st.lists(st.sampled_from(JSON_PIECES), max_size=60).map(b"".join),
)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


@pytest.fixture(scope="module")
def estimator() -> Iterator[TokenEstimator]:
    loaded = load_estimator()
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def fuzz_recorder() -> ListRecorder:
    return ListRecorder()


@pytest.fixture(scope="module")
def fuzz_services(fuzz_recorder: ListRecorder, estimator: TokenEstimator) -> Services:
    return limit_services(fuzz_recorder, estimator)


def check(
    loop: asyncio.AbstractEventLoop, services: Services, recorder: ListRecorder, data: bytes
) -> None:
    """The same body through every route: each parser sees every example."""
    for route, path in ROUTES.items():
        note(f"route {route}")
        recorder.records.clear()
        response: pb.ProcessingResponse = loop.run_until_complete(drive(services, path, data))
        kind = response.WhichOneof("response")
        if kind == "immediate_response":
            status = response.immediate_response.status.code
            assert 400 <= status < 500, (route, response.immediate_response.body)
            error_in_shape(route, status, response.immediate_response.body)
            [record] = recorder.records
            assert (record.decision, record.app_id, record.status_code) == ("deny", "app1", status)
        else:
            assert kind == "request_body", route
            replaced = response.request_body.response.body_mutation.body
            if replaced:
                assert isinstance(json.loads(replaced), dict)


@FUZZ
@given(data=json_bodies())
def test_any_json_is_parsed_or_a_provider_shaped_4xx(
    loop: asyncio.AbstractEventLoop,
    fuzz_services: Services,
    fuzz_recorder: ListRecorder,
    data: bytes,
) -> None:
    check(loop, fuzz_services, fuzz_recorder, data)


@FUZZ
@given(data=raw_bodies)
def test_any_bytes_are_parsed_or_a_provider_shaped_4xx(
    loop: asyncio.AbstractEventLoop,
    fuzz_services: Services,
    fuzz_recorder: ListRecorder,
    data: bytes,
) -> None:
    check(loop, fuzz_services, fuzz_recorder, data)
