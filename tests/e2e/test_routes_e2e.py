"""Every non-token route metered end to end through the real Envoy and sidecar: the
record carries the route's unit, the quantity billed and the cost at the deployment's
per-unit price, checked against hand computations.

The fake provider answers in the wire formats transcribed from the providers' public
API references (OpenAI images, audio and moderations; Cohere ``/v2/rerank``; Anthropic
``/v1/messages/count_tokens``; Gemini ``countTokens`` / ``batchEmbedContents``;
``policy_sidecar/fakeprovider/media.py``). Requests go through the official SDKs where
they have the endpoint (openai: images, audio, moderations; anthropic: count_tokens),
raw HTTP otherwise, so multipart uploads are encoded as clients really send them.
"""

from __future__ import annotations

import json
import os
import struct
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.fakeprovider.app import MODEL_HEADER
from tests.e2e.conftest import usage_records

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN = uuid.uuid4().hex[:8]  # a fresh org per run: Redis counters outlive the test
KEY = f"ps-media-{RUN}-0123456789"
TOK_KEY = f"ps-mtok-{RUN}-0123456789"
COST_KEY = f"ps-mcost-{RUN}-0123456789"

CONFIG = f"""
version: 1
applications:
  - {{id: media-app, org_id: media-{RUN}, keys: [{{environment: dev, key: {KEY}}}]}}
  - {{id: tok-app, org_id: media-{RUN}, keys: [{{environment: dev, key: {TOK_KEY}}}]}}
  - {{id: cost-app, org_id: media-{RUN}, keys: [{{environment: dev, key: {COST_KEY}}}]}}
models:
  - name: dall-e-3
    provider: openai
    image_prices: {{"1024x1024/standard": 0.04, "1024x1024/hd": 0.08, "1792x1024/hd": 0.12}}
  - {{name: dall-e-2, provider: openai, unit_price_usd: 0.02}}
  - {{name: gpt-image-1, provider: openai}}
  - {{name: tts-1, provider: openai, unit_price_usd: 0.000015}}
  - {{name: whisper-1, provider: openai, unit_price_usd: 0.0001}}
  - {{name: transcriber, provider: openai, upstream_model: whisper-1, unit_price_usd: 0.0002}}
  - {{name: omni-moderation-latest, provider: openai}}
  - {{name: rerank-v3.5, provider: cohere, unit_price_usd: 0.002}}
  - name: gemini-embedding-001
    provider: gemini
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0
  - {{name: gemini-2.5-pro, provider: gemini}}
  - {{name: embed-v4.0, provider: cohere, input_price_per_mtok: 0.12, output_price_per_mtok: 0}}
  - {{name: claude-sonnet-4-5, provider: anthropic}}
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
policies:
  - id: tok-1
    name: one token an hour
    type: token_limit
    scope: {{app_id: tok-app}}
    config: {{limit: 1, window: 1h, count: total}}
  - id: cost-10c
    name: ten cents an hour
    type: token_limit
    scope: {{app_id: cost-app}}
    config: {{limit_usd: 0.10, window: 1h, count: cost_usd}}
"""


@pytest.fixture(scope="module")
def media_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("media")
    config = workdir / "media.yaml"
    config.write_text(CONFIG)
    stack = start_stack(
        workdir, config, workers=2, sidecar_env={"POLICY_SIDECAR_REDIS_URL": REDIS_URL}
    )
    try:
        yield stack
    finally:
        stack.stop()


def rid() -> str:
    return f"media-{uuid.uuid4()}"


def record_for(stack: Stack, request_id: str) -> dict[str, Any]:
    [record] = usage_records(stack, {request_id}, timeout=30.0)
    return record


def client(stack: Stack, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)


def wav(seconds: float, byte_rate: int = 32_000) -> bytes:
    """A PCM WAV file (16 kHz mono 16-bit: 32,000 bytes a second) of silence."""
    data = int(seconds * byte_rate)
    header = b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, 1, byte_rate // 2, byte_rate, 2, 16)
    return header + b"data" + struct.pack("<I", data) + bytes(data)


def post_json(
    stack: Stack, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        stack.url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def assert_metered(
    record: dict[str, Any], *, unit: str, quantity: float, cost: float | None
) -> None:
    assert record["decision"] == "allow", record
    assert record["status_code"] == 200
    assert record["unit"] == unit
    assert record["quantity"] == pytest.approx(quantity)
    if cost is None:
        assert record["cost_usd"] is None
    else:
        assert record["cost_usd"] == pytest.approx(cost)


# -- OpenAI images -------------------------------------------------------------------


def test_image_generation_is_priced_per_image_by_size_and_quality(media_stack: Stack) -> None:
    r = rid()
    result = client(media_stack).images.generate(
        model="dall-e-3",
        prompt="a lighthouse at dusk",
        n=2,
        size="1792x1024",
        quality="hd",
        extra_headers={"x-request-id": r},
    )
    assert len(result.data or []) == 2
    # 2 images at the 1792x1024/hd price: 2 x $0.12.
    assert_metered(record_for(media_stack, r), unit="images", quantity=2, cost=0.24)


def test_image_edit_multipart_is_metered_from_the_response(media_stack: Stack) -> None:
    r = rid()
    png = bytes.fromhex("89504e470d0a1a0a") + bytes(64)
    result = client(media_stack).images.edit(
        model="dall-e-2",
        image=("room.png", png, "image/png"),
        prompt="add a cat",
        n=3,
        extra_headers={"x-request-id": r},
    )
    assert len(result.data or []) == 3
    # No price for its size and quality: unit_price_usd, 3 x $0.02.
    assert_metered(record_for(media_stack, r), unit="images", quantity=3, cost=0.06)


def test_an_image_model_without_a_price_is_refused_naming_the_price(media_stack: Stack) -> None:
    r = rid()
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(media_stack).images.generate(
            model="gpt-image-1", prompt="a cat", extra_headers={"x-request-id": r}
        )
    body = info.value.body
    assert isinstance(body, dict)
    assert body["code"] == "model_unpriced"
    assert body["details"]["missing_prices"] == [
        "image_prices['1024x1024/standard'] or unit_price_usd (USD per image)"
    ]
    record = record_for(media_stack, r)
    assert (record["decision"], record["unit"], record["quantity"]) == ("deny", "images", 0)


# -- OpenAI audio --------------------------------------------------------------------


def test_speech_is_priced_per_character_of_input(media_stack: Stack) -> None:
    r = rid()
    text = "The quick brown fox jumps over the lazy dog."
    audio = client(media_stack).audio.speech.create(
        model="tts-1", voice="alloy", input=text, extra_headers={"x-request-id": r}
    )
    assert audio.content[:2] == b"\xff\xfb"
    assert_metered(
        record_for(media_stack, r), unit="characters", quantity=len(text), cost=44 * 0.000015
    )


def test_transcription_seconds_come_from_the_response(media_stack: Stack) -> None:
    r = rid()
    result = client(media_stack).audio.transcriptions.create(
        model="whisper-1",
        file=("hello.wav", wav(2.5), "audio/wav"),
        response_format="verbose_json",
        extra_headers={"x-request-id": r},
    )
    assert result.duration == pytest.approx(2.5)
    record = record_for(media_stack, r)
    # usage.seconds is what the API bills (whole seconds): 3 x $0.0001.
    assert_metered(record, unit="seconds", quantity=3, cost=3 * 0.0001)
    assert "quantity_estimated" not in record["usage_flags"]


def test_transcription_without_a_duration_is_estimated_from_the_upload(
    media_stack: Stack,
) -> None:
    r = rid()
    upload = bytes(48_000)  # not a WAV: 48,000 bytes at the assumed 16,000 bytes a second
    result = client(media_stack).audio.transcriptions.create(
        model="whisper-1",
        file=("note.mp3", upload, "audio/mpeg"),
        response_format="json",
        extra_headers={"x-request-id": r},
    )
    assert result.text
    record = record_for(media_stack, r)
    assert_metered(record, unit="seconds", quantity=3.0, cost=3.0 * 0.0001)
    assert "quantity_estimated" in record["usage_flags"]


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    for name, (filename, data) in files.items():
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
            f' filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", out + f"--{boundary}--\r\n".encode()


def test_translation_multipart_is_metered_in_seconds(media_stack: Stack) -> None:
    r = rid()
    content_type, body = multipart(
        {"model": "whisper-1", "response_format": "verbose_json"},
        {"file": ("bonjour.wav", wav(1.5))},
    )
    request = urllib.request.Request(
        media_stack.url + "/v1/audio/translations",
        data=body,
        headers={"content-type": content_type, "authorization": f"Bearer {KEY}", "x-request-id": r},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["task"] == "translate"
    assert_metered(record_for(media_stack, r), unit="seconds", quantity=2, cost=2 * 0.0001)


def test_an_upload_to_an_alias_has_its_model_field_rewritten(media_stack: Stack) -> None:
    r = rid()
    content_type, body = multipart(
        {"model": "transcriber", "response_format": "verbose_json"},
        {"file": ("a.wav", wav(1.0))},
    )
    request = urllib.request.Request(
        media_stack.url + "/v1/audio/transcriptions",
        data=body,
        headers={"content-type": content_type, "authorization": f"Bearer {KEY}", "x-request-id": r},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers[MODEL_HEADER] == "whisper-1"  # what the provider received
    record = record_for(media_stack, r)
    assert (record["requested_model"], record["served_model"]) == ("transcriber", "whisper-1")
    assert_metered(record, unit="seconds", quantity=1, cost=0.0002)


def test_a_large_upload_passes_the_raised_buffer_and_is_metered(media_stack: Stack) -> None:
    """12 MB is above the 10 MiB buffer of every other route (a 413 there)."""
    r = rid()
    audio = wav(400.0)  # 12.8 MB
    assert len(audio) > 10 * 1024 * 1024
    result = client(media_stack).audio.transcriptions.create(
        model="whisper-1",
        file=("long.wav", audio, "audio/wav"),
        response_format="verbose_json",
        extra_headers={"x-request-id": r},
    )
    assert result.duration == pytest.approx(400.0)
    assert_metered(record_for(media_stack, r), unit="seconds", quantity=400, cost=0.04)


def test_a_json_body_to_an_upload_route_is_refused(media_stack: Stack) -> None:
    status, body = post_json(
        media_stack,
        "/v1/audio/transcriptions",
        {"model": "whisper-1", "file": "x"},
        {"authorization": f"Bearer {KEY}"},
    )
    assert status == 400
    assert "multipart/form-data" in body["error"]["message"]


# -- free routes: counted, never priced ----------------------------------------------


def test_moderation_is_free_and_counted(media_stack: Stack) -> None:
    r = rid()
    result = client(media_stack).moderations.create(
        input="I want to hug my cat", extra_headers={"x-request-id": r}
    )
    assert result.results[0].flagged is False
    assert_metered(record_for(media_stack, r), unit="requests", quantity=1, cost=0.0)


def test_anthropic_count_tokens_is_free_and_counted(media_stack: Stack) -> None:
    r = rid()
    claude = anthropic.Anthropic(base_url=media_stack.url, api_key=KEY, max_retries=0)
    result = claude.messages.count_tokens(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": "Hello, world"}],
        extra_headers={"x-request-id": r},
    )
    assert result.input_tokens > 0
    assert_metered(record_for(media_stack, r), unit="requests", quantity=1, cost=0.0)


def test_gemini_count_tokens_is_free_and_counted(media_stack: Stack) -> None:
    r = rid()
    status, body = post_json(
        media_stack,
        "/v1beta/models/gemini-2.5-pro:countTokens",
        {"contents": [{"parts": [{"text": "How many tokens is this?"}]}]},
        {"x-goog-api-key": KEY, "x-request-id": r},
    )
    assert status == 200 and body["totalTokens"] > 0
    assert_metered(record_for(media_stack, r), unit="requests", quantity=1, cost=0.0)


# -- Cohere rerank, Gemini batch embeddings ------------------------------------------


def test_cohere_rerank_is_billed_in_search_units(media_stack: Stack) -> None:
    r = rid()
    documents = [f"document {i}" for i in range(150)]
    status, body = post_json(
        media_stack,
        "/v2/rerank",
        {"model": "rerank-v3.5", "query": "which document?", "documents": documents, "top_n": 3},
        {"authorization": f"Bearer {KEY}", "x-request-id": r},
    )
    assert status == 200
    assert body["meta"]["billed_units"]["search_units"] == 2  # 150 documents: 2 x 100
    assert_metered(record_for(media_stack, r), unit="search_units", quantity=2, cost=0.004)


def test_gemini_batch_embeddings_are_metered_in_tokens(media_stack: Stack) -> None:
    r = rid()
    texts = ["What is the meaning of life?", "How does a bird fly?"]
    status, body = post_json(
        media_stack,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        {
            "requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}}
                for t in texts
            ]
        },
        {"x-goog-api-key": KEY, "x-request-id": r},
    )
    assert status == 200 and len(body["embeddings"]) == 2
    record = record_for(media_stack, r)
    estimate = record["estimated_tokens"]
    assert estimate > 0
    assert (record["decision"], record["unit"], record["quantity"]) == ("allow", "tokens", estimate)
    assert record["cost_usd"] == pytest.approx(estimate * 0.15 / 1e6)


def test_cohere_embed_is_metered_in_billed_units(media_stack: Stack) -> None:
    r = rid()
    status, body = post_json(
        media_stack,
        "/v2/embed",
        {
            "model": "embed-v4.0",
            "texts": ["hello", "goodbye"],
            "input_type": "search_document",
            "embedding_types": ["float"],
        },
        {"authorization": f"Bearer {KEY}", "x-request-id": r},
    )
    assert status == 200
    billed = body["meta"]["billed_units"]["input_tokens"]
    record = record_for(media_stack, r)
    # Billed units are what is metered (not tokens.input_tokens, with Cohere's template).
    assert (record["unit"], record["quantity"], record["prompt_tokens"]) == (
        "tokens",
        billed,
        billed,
    )
    assert record["cost_usd"] == pytest.approx(billed * 0.12 / 1e6)


def test_gemini_embed_content_is_metered_in_tokens(media_stack: Stack) -> None:
    r = rid()
    status, body = post_json(
        media_stack,
        "/v1beta/models/gemini-embedding-001:embedContent",
        {"content": {"parts": [{"text": "What is the meaning of life?"}]}},
        {"x-goog-api-key": KEY, "x-request-id": r},
    )
    assert status == 200 and body["embedding"]["values"]
    record = record_for(media_stack, r)
    # The API reports no usage: the prompt estimate is charged, marked as an estimate.
    estimate = record["estimated_tokens"]
    assert estimate > 0
    assert (record["unit"], record["quantity"], record["usage_reported"]) == (
        "tokens",
        estimate,
        False,
    )
    assert record["cost_usd"] == pytest.approx(estimate * 0.15 / 1e6)


# -- token limits apply to token routes only; cost to every route ---------------------


def test_token_limits_do_not_apply_to_other_units(media_stack: Stack) -> None:
    tok = client(media_stack, TOK_KEY)
    # One token an hour: any chat alone is over the whole limit (a 400, never admitted).
    with pytest.raises(openai.BadRequestError) as info:
        tok.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there"}]
        )
    assert info.value.body["code"] == "request_exceeds_limit"  # type: ignore[index]
    r = rid()
    tok.audio.speech.create(
        model="tts-1", voice="alloy", input="Still allowed.", extra_headers={"x-request-id": r}
    )
    assert_metered(record_for(media_stack, r), unit="characters", quantity=14, cost=14 * 15e-6)


def test_cost_budgets_count_what_other_units_cost(media_stack: Stack) -> None:
    spender = client(media_stack, COST_KEY)
    r = rid()
    spender.images.generate(
        model="dall-e-3",
        prompt="two lighthouses",
        n=2,
        size="1792x1024",
        quality="hd",
        extra_headers={"x-request-id": r},
    )
    # Written once the budget is settled: $0.24 against a $0.10 budget.
    assert_metered(record_for(media_stack, r), unit="images", quantity=2, cost=0.24)
    with pytest.raises(openai.RateLimitError) as info:
        spender.audio.speech.create(model="tts-1", voice="alloy", input="over budget")
    body = info.value.body
    assert isinstance(body, dict) and body["details"]["policy_id"] == "cost-10c"
