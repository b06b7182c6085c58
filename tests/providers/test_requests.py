"""Request bodies: fixtures parsed into the facts policies need; malformed bodies named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from policy_sidecar.providers import ParsedRequest, PromptMessage, RequestError, default_registry

FIXTURES = Path(__file__).parents[1] / "fixtures"
REGISTRY = default_registry()
AZURE_CHAT = "/openai/deployments/prod-gpt4o/chat/completions?api-version=2024-10-21"
GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"


def parse(path: str, body: dict[str, Any]) -> ParsedRequest:
    found = REGISTRY.match("POST", path)
    assert found is not None
    return found[0].parse_request(found[1], body)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


# (path, fixture, model, stream, max tokens, message roles, extra texts, images, pretokenized)
CASES = [
    (
        "/v1/chat/completions",
        "openai/chat_request.json",
        "gpt-4o-2024-08-06",
        False,
        256,
        ("system", "user", "assistant", "tool"),
        1,
        1,
        0,
    ),
    (
        "/v1/completions",
        "openai/completions_request.json",
        "gpt-3.5-turbo-instruct",
        True,
        7,
        (),
        1,
        0,
        0,
    ),
    (
        "/v1/embeddings",
        "openai/embeddings_request.json",
        "text-embedding-3-small",
        False,
        0,
        (),
        1,
        0,
        2,
    ),
    (
        "/v1/responses",
        "openai/responses_request.json",
        "o4-mini",
        True,
        512,
        ("developer", "user"),
        1,
        1,
        0,
    ),
    (AZURE_CHAT, "azure/chat_request.json", "prod-gpt4o", True, 800, ("system", "user"), 0, 0, 0),
    (
        "/v1/messages",
        "anthropic/messages_request.json",
        "claude-sonnet-4-5-20250929",
        True,
        1024,
        ("system", "user", "assistant", "user"),
        1,
        1,
        0,
    ),
    (
        "/v1/chat",
        "cohere/v1_chat_request.json",
        "command-r-plus-08-2024",
        True,
        300,
        ("system", "USER", "CHATBOT", "USER"),
        1,
        0,
        0,
    ),
    (
        "/v2/chat",
        "cohere/v2_chat_request.json",
        "command-a-03-2025",
        True,
        500,
        ("system", "user"),
        1,
        1,
        0,
    ),
    ("/v2/embed", "cohere/v2_embed_request.json", "embed-v4.0", False, 0, (), 2, 0, 0),
    (
        GEMINI,
        "gemini/generate_request.json",
        "gemini-2.5-flash",
        False,
        800,
        ("system", "user", "model", "user"),
        1,
        1,
        0,
    ),
]


@pytest.mark.parametrize(
    ("path", "name", "model", "stream", "max_tokens", "roles", "extras", "images", "pretokenized"),
    CASES,
)
def test_request_fixtures(
    path: str,
    name: str,
    model: str,
    stream: bool,
    max_tokens: int,
    roles: tuple[str, ...],
    extras: int,
    images: int,
    pretokenized: int,
) -> None:
    parsed = parse(path, fixture(name))
    assert parsed.model == model
    assert parsed.stream is stream
    assert parsed.max_output_tokens == max_tokens
    assert tuple(m.role for m in parsed.messages) == roles
    assert len(parsed.extra_text) == extras
    assert parsed.image_count == images
    assert parsed.pretokenized_tokens == pretokenized


def test_text_reaches_the_tokenizer() -> None:
    parsed = parse("/v1/chat/completions", fixture("openai/chat_request.json"))
    assert parsed.messages[1] == PromptMessage("user", "What is in this image?", name="alice")
    assert parsed.messages[2].text == 'get_weather{"city":"Paris"}'
    assert '"get_weather"' in parsed.extra_text[0]
    anthropic = parse("/v1/messages", fixture("anthropic/messages_request.json"))
    assert anthropic.messages[0].text.startswith("You are an expert")
    assert anthropic.messages[2].text == 'search_text{"query":"portrait"}'
    assert "Pemberley" in anthropic.messages[3].text
    gemini = parse(GEMINI, fixture("gemini/generate_request.json"))
    assert "orange tabby" in gemini.messages[2].text


def test_gemini_stream_flag_comes_from_path() -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    assert parse("/v1beta/models/m:streamGenerateContent?alt=sse", body).stream is True
    assert parse(GEMINI, body).stream is False


def test_azure_deployment_wins_over_body_model() -> None:
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}
    assert parse(AZURE_CHAT, body).model == "prod-gpt4o"
    assert parse("/openai/v1/chat/completions", body).model == "gpt-4"


CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"


def test_every_choice_may_use_max_tokens() -> None:
    """`n` completions (and `best_of` on completions) each may run to max_tokens: the
    request's output budget, which the token limits reserve, is their product."""
    chat = parse(CHAT, {"model": "m", "messages": [], "max_tokens": 100, "n": 3})
    assert chat.max_output_tokens == 300
    assert parse(CHAT, {"model": "m", "messages": [], "n": 3}).max_output_tokens is None
    completion = parse("/v1/completions", {"model": "m", "prompt": "x", "n": 2, "best_of": 5})
    assert completion.max_output_tokens == 16 * 5
    with pytest.raises(RequestError, match="'n' must be an integer from 1 to 128"):
        parse(CHAT, {"model": "m", "messages": [], "n": 129})
    with pytest.raises(RequestError, match="'best_of' must be an integer from 1 to 128"):
        parse("/v1/completions", {"model": "m", "prompt": "x", "best_of": 1.5})


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (CHAT, {"messages": []}, "'model' is required"),
        (CHAT, {"model": 4, "messages": []}, "'model' must be a non-empty string, got integer"),
        (CHAT, {"model": "m"}, "'messages' is required"),
        (CHAT, {"model": "m", "messages": {}}, "'messages' must be an array, got object"),
        (CHAT, {"model": "m", "messages": ["hi"]}, "'messages[0]' must be an object, got string"),
        (
            CHAT,
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "'messages[0].content' must be a string or an array, got integer",
        ),
        (
            CHAT,
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "'messages[0].content[0].text' is required",
        ),
        (CHAT, {"model": "m", "messages": [{"content": "x"}]}, "'messages[0].role' is required"),
        (
            CHAT,
            {"model": "m", "messages": [], "stream": "yes"},
            "'stream' must be a boolean, got string",
        ),
        (
            CHAT,
            {"model": "m", "messages": [], "max_tokens": -1},
            "'max_tokens' must be a non-negative integer, got integer",
        ),
        (
            CHAT,
            {"model": "m", "messages": [], "max_completion_tokens": 1.5},
            "'max_completion_tokens' must be a non-negative integer, got number",
        ),
        (CHAT, {"model": "m", "messages": [], "tools": {}}, "'tools' must be an array, got object"),
        (
            "/v1/embeddings",
            {"model": "m", "input": [1.5]},
            "'input[0]' must be a string, a token id or an array of token ids, got number",
        ),
        ("/v1/completions", {"model": "m"}, "'prompt' is required"),
        ("/v1/responses", {"model": "m", "input": 3}, "'input' must be a string or an array"),
        (
            MESSAGES,
            {"model": "c", "max_tokens": "9", "messages": []},
            "'max_tokens' must be a non-negative integer, got string",
        ),
        (
            MESSAGES,
            {"model": "c", "messages": [{"role": "user", "content": [{"type": 1}]}]},
            "'messages[0].content[0].type' must be a string, got integer",
        ),
        (
            MESSAGES,
            {"model": "c", "system": 7, "messages": []},
            "'system' must be a string or an array, got integer",
        ),
        ("/v1/chat", {"message": ["x"]}, "'message' must be a non-empty string, got array"),
        (
            "/v2/chat",
            {"model": "c", "messages": [{"role": "user", "content": 1}]},
            "'messages[0].content' must be a string or an array, got integer",
        ),
        ("/v2/embed", {"model": "e", "texts": [1]}, "'texts[0]' must be a string, got integer"),
        (
            GEMINI,
            {"contents": [{"parts": [{"text": 1}]}]},
            "'contents[0].parts[0].text' must be a string, got integer",
        ),
        (
            GEMINI,
            {"contents": [{"parts": []}], "generationConfig": {"maxOutputTokens": "9"}},
            "'generationConfig.maxOutputTokens' must be a non-negative integer, got string",
        ),
        (GEMINI, {}, "'contents' is required"),
        # Found by tests/extproc/test_request_fuzz.py: a list here once raised TypeError.
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": [{"type": []}]}]},
            "'messages[0].content[0].type' must be a string, got array",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [], "max_tokens": 2**31},
            "'max_tokens' must be at most 2147483647",
        ),
        ("/v1/chat/completions", {"model": "\ud800", "messages": []}, "'model' must be valid"),
        ("/v1/messages", {"model": "m" * 257, "messages": []}, "'model' must be at most 256"),
    ],
)
def test_malformed_bodies_name_the_field(path: str, body: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse(path, body)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("path", "body", "patch"),
    [
        (
            CHAT,
            {"model": "m", "messages": [], "stream": True},
            {"stream_options": {"include_usage": True}},
        ),
        (
            CHAT,
            {"model": "m", "messages": [], "stream": True, "stream_options": {"x": 1}},
            {"stream_options": {"x": 1, "include_usage": True}},
        ),
        (
            CHAT,
            {
                "model": "m",
                "messages": [],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
            None,
        ),
        (CHAT, {"model": "m", "messages": []}, None),
        (
            "/v1/completions",
            {"model": "m", "prompt": "x", "stream": True},
            {"stream_options": {"include_usage": True}},
        ),
        (AZURE_CHAT, {"messages": [], "stream": True}, {"stream_options": {"include_usage": True}}),
        ("/v1/responses", {"model": "m", "input": "x", "stream": True}, None),
        (MESSAGES, {"model": "c", "messages": [], "stream": True}, None),
        ("/v2/chat", {"model": "c", "messages": [], "stream": True}, None),
        ("/v1beta/models/m:streamGenerateContent", {"contents": []}, None),
    ],
)
def test_request_patch(path: str, body: dict[str, Any], patch: dict[str, Any] | None) -> None:
    found = REGISTRY.match("POST", path)
    assert found is not None
    assert found[0].request_patch(found[1], body) == patch
