"""All five providers, JSON and streaming, through the real Envoy: the usage record
matches what the provider reported, whatever the wire format.

The expected usage is what the fake provider reports for the same request
(``FakeProvider.usage_for``), computed here in-process; SDK clients also check that
what the client saw agrees.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from policy_sidecar.cli.launcher import Stack, free_port, new_stack, start_stack
from policy_sidecar.fakeprovider.app import CACHED_TOKENS_HEADER, FakeProvider
from policy_sidecar.providers import Usage, default_registry
from policy_sidecar.tokens import load_estimator
from tests.e2e.conftest import KEY, usage_records

pytestmark = pytest.mark.e2e

OPEN_CONFIG = f"""
version: 1
applications:
  - id: any-app
    org_id: any-org
    keys: [{{environment: dev, key: {KEY}}}]
"""
MESSAGES = [{"role": "user", "content": "Name three prime numbers, briefly."}]


@pytest.fixture(scope="module")
def open_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("open")
    config = workdir / "open.yaml"
    config.write_text(OPEN_CONFIG)
    stack = start_stack(workdir, config, workers=2)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    estimator = load_estimator()
    yield FakeProvider(estimator)
    estimator.close()


def expected(
    fake: FakeProvider, method: str, path: str, body: dict[str, Any], cached: int = 0
) -> Usage:
    matched = default_registry().match(method, path)
    assert matched is not None
    return fake.usage_for(matched[1], body, cached)


def record_for(stack: Stack, rid: str) -> dict[str, Any]:
    [record] = usage_records(stack, {rid})
    return record


def assert_record(record: dict[str, Any], usage: Usage, *, provider: str, streamed: bool) -> None:
    assert record["decision"] == "allow"
    assert record["status_code"] == 200
    assert record["provider"] == provider
    assert record["streamed"] is streamed
    assert record["usage_reported"] is True
    got = tuple(
        record[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens")
    )
    assert got == (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        usage.cached_tokens,
    )


def post(stack: Stack, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    request = urllib.request.Request(
        stack.url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.status == 200
        data: bytes = response.read()
        return data


def rid() -> str:
    return f"prov-{uuid.uuid4()}"


# -- OpenAI: the other operations (chat is in test_openai_e2e) ---------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_openai_completions(open_stack: Stack, fake: FakeProvider, stream: bool) -> None:
    r = rid()
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "max_tokens": 9}
    client = openai.OpenAI(base_url=f"{open_stack.url}/v1", api_key=KEY, max_retries=0)
    result = client.completions.create(**body, stream=stream, extra_headers={"x-request-id": r})  # type: ignore[call-overload]
    if stream:
        list(result)
    want = expected(fake, "POST", "/v1/completions", body)
    assert want.prompt_tokens == 5  # tiktoken's count, what the real API reports
    assert_record(record_for(open_stack, r), want, provider="openai", streamed=stream)


def test_openai_embeddings(open_stack: Stack, fake: FakeProvider) -> None:
    r = rid()
    body = {
        "model": "text-embedding-3-small",
        "input": ["The food was delicious", "and the waiter"],
    }
    client = openai.OpenAI(base_url=f"{open_stack.url}/v1", api_key=KEY, max_retries=0)
    result = client.embeddings.create(**body, extra_headers={"x-request-id": r})  # type: ignore[arg-type]
    want = expected(fake, "POST", "/v1/embeddings", body)
    assert result.usage.prompt_tokens == want.prompt_tokens
    assert_record(record_for(open_stack, r), want, provider="openai", streamed=False)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_responses(open_stack: Stack, fake: FakeProvider, stream: bool) -> None:
    r = rid()
    body = {
        "model": "gpt-4.1-mini",
        "input": "Tell me a three sentence story.",
        "max_output_tokens": 16,
    }
    client = openai.OpenAI(base_url=f"{open_stack.url}/v1", api_key=KEY, max_retries=0)
    result = client.responses.create(**body, stream=stream, extra_headers={"x-request-id": r})  # type: ignore[call-overload]
    if stream:
        list(result)
    want = expected(fake, "POST", "/v1/responses", body)
    assert_record(record_for(open_stack, r), want, provider="openai", streamed=stream)


# -- Azure OpenAI --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_azure_chat(open_stack: Stack, fake: FakeProvider, stream: bool) -> None:
    r = rid()
    client = openai.AzureOpenAI(
        azure_endpoint=open_stack.url, api_key=KEY, api_version="2024-10-21", max_retries=0
    )
    result = client.chat.completions.create(
        model="my-gpt4o-deployment",
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=10,
        stream=stream,
        extra_headers={"x-request-id": r},
    )
    if stream:
        chunks = list(result)  # type: ignore[arg-type]
        # The sidecar asked for usage; the client still gets a valid stream.
        assert any(c.usage is not None for c in chunks)
    body = {"messages": MESSAGES, "max_tokens": 10}
    path = "/openai/deployments/my-gpt4o-deployment/chat/completions?api-version=2024-10-21"
    want = expected(fake, "POST", path, body)
    record = record_for(open_stack, r)
    assert record["requested_model"] == "my-gpt4o-deployment"
    assert_record(record, want, provider="azure", streamed=stream)


# -- Anthropic, with the anthropic SDK -------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages(open_stack: Stack, fake: FakeProvider, stream: bool) -> None:
    r = rid()
    client = anthropic.Anthropic(base_url=open_stack.url, api_key=KEY, max_retries=0)
    headers = {"x-request-id": r, CACHED_TOKENS_HEADER: "4"}
    kwargs: dict[str, Any] = {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 14,
        "system": "You are terse.",
        "messages": MESSAGES,
        "extra_headers": headers,
    }
    if stream:
        with client.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    body = {k: v for k, v in kwargs.items() if k != "extra_headers"}
    want = expected(fake, "POST", "/v1/messages", body, cached=4)
    assert message.usage.output_tokens == want.completion_tokens
    assert message.usage.cache_read_input_tokens == 4
    assert_record(record_for(open_stack, r), want, provider="anthropic", streamed=stream)


# -- Cohere v1 and v2 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "stream"), [("v1", False), ("v1", True), ("v2", False), ("v2", True)]
)
def test_cohere_chat(open_stack: Stack, fake: FakeProvider, version: str, stream: bool) -> None:
    r = rid()
    if version == "v1":
        body: dict[str, Any] = {"model": "command-r", "message": "Hello there", "max_tokens": 8}
    else:
        body = {"model": "command-r-plus", "messages": MESSAGES, "max_tokens": 8}
    body["stream"] = stream
    post(
        open_stack, f"/{version}/chat", body, {"authorization": f"Bearer {KEY}", "x-request-id": r}
    )
    want = expected(fake, "POST", f"/{version}/chat", body)
    assert_record(record_for(open_stack, r), want, provider="cohere", streamed=stream)


# -- Gemini ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "streamed"),
    [("generateContent", False), ("streamGenerateContent?alt=sse", True)],
)
def test_gemini_generate(
    open_stack: Stack, fake: FakeProvider, method: str, streamed: bool
) -> None:
    r = rid()
    body = {
        "contents": [{"role": "user", "parts": [{"text": "Explain how AI works in a few words"}]}],
        "generationConfig": {"maxOutputTokens": 11},
    }
    path = f"/v1beta/models/gemini-2.0-flash:{method}"
    data = post(open_stack, path, body, {"x-goog-api-key": KEY, "x-request-id": r})
    assert b"usageMetadata" in data
    want = expected(fake, "POST", path, body)
    record = record_for(open_stack, r)
    assert record["requested_model"] == "gemini-2.0-flash"
    assert_record(record, want, provider="gemini", streamed=streamed)


def test_fake_provider_compresses_when_asked(open_stack: Stack) -> None:
    # Without the sidecar in the way, the upstream answers gzip: so the next test's
    # identity answer is the sidecar's doing.
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    request = urllib.request.Request(
        f"http://127.0.0.1:{open_stack.upstream_port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"accept-encoding": "gzip"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.headers.get("content-encoding") == "gzip"


def test_gzip_is_prevented_by_asking_for_identity(open_stack: Stack) -> None:
    # The client asks for gzip; the sidecar strips accept-encoding so the upstream
    # answers identity and the usage parser reads plain bytes.
    r = rid()
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    request = urllib.request.Request(
        open_stack.url + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {KEY}", "accept-encoding": "gzip", "x-request-id": r},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        assert response.headers.get("content-encoding") is None
        json.loads(response.read())
    assert record_for(open_stack, r)["usage_reported"] is True


def test_model_deployment_routes_to_its_cluster(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        OPEN_CONFIG
        + """
models:
  - {name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}
  - name: fast
    provider: openai
    upstream_model: gpt-4o-mini
    route: secondary
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
"""
    )
    stack = new_stack(tmp_path, workers=1)
    try:
        stack.start_fake_provider()
        stack.start_fake_provider("secondary", free_port())
        stack.start_sidecar(config)
        stack.start_envoy()
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0)
        plain = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )  # type: ignore[arg-type]
        routed = client.chat.completions.with_raw_response.create(model="fast", messages=MESSAGES)  # type: ignore[arg-type]
        assert plain.headers["x-fake-provider"] == "fake-provider"
        assert routed.headers["x-fake-provider"] == "secondary"
        # The alias was rewritten to the deployment's upstream model name.
        assert routed.parse().model == "gpt-4o-mini"
    finally:
        stack.stop()
