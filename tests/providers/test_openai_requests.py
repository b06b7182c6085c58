"""OpenAI-shaped request bodies (OpenAI and Azure OpenAI) parsed in full: every field of
the `ParsedRequest`, every kind of content part, choices, and the exact error texts
(found by mutation testing, docs/testing.md)."""

from __future__ import annotations

from typing import Any

import pytest

from policy_sidecar.providers import ParsedRequest, PromptMessage, RequestError
from policy_sidecar.providers._openai_request import (
    MAX_CHOICES,
    content_text,
    include_usage_patch,
    parse_chat,
    parse_completion,
    parse_embedding,
    parse_responses,
    text_or_tokens,
)

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"a": "é"}}}


def error(parser: Any, body: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(RequestError) as caught:
        parser(body, **kwargs)
    return str(caught.value)


# -- content ---------------------------------------------------------------------------


def test_content_text_joins_every_text_kind_and_counts_images() -> None:
    content = [
        {"type": "text", "text": "a"},
        {"type": "input_text", "text": "b"},
        {"type": "output_text", "text": "c"},
        {"type": "refusal", "refusal": "d"},
        {"type": "refusal"},
        {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "input_image", "image_url": "y"},
        {"type": "input_audio", "input_audio": {"data": "zz"}},
        {"type": "file", "file": {"file_id": "f"}},
    ]
    assert content_text(content, "c") == ("abcd", 2)
    assert content_text(None, "c") == ("", 0)
    assert content_text("plain", "c") == ("plain", 0)
    assert content_text([], "c") == ("", 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (5, "'m.content' must be a string or an array, got integer"),
        ([{"type": "text", "text": "a"}, "x"], "'m.content[1]' must be an object, got string"),
        ([{"text": "x"}], "'m.content[0].type' must be a string, got null"),
        (
            [{"type": "text", "text": ""}],
            "'m.content[0].text' must be a non-empty string, got string",
        ),
        (
            [{"type": "refusal", "refusal": 1}],
            "'m.content[0].refusal' must be a string, got integer",
        ),
    ],
)
def test_content_errors_name_the_part(content: Any, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        content_text(content, "m.content")
    assert str(caught.value) == message


# -- chat -------------------------------------------------------------------------------


def test_a_chat_request_in_full() -> None:
    body = {
        "model": "gpt-4o",
        "stream": True,
        "max_completion_tokens": 50,
        "max_tokens": 999,
        "n": 2,
        "messages": [
            {"role": "system", "content": "be brief", "name": "ops"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "look"}, {"type": "image_url"}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"function": {"name": "get", "arguments": '{"q":1}'}},
                    {"function": {"arguments": "{}"}},
                    {"function": {"name": "only"}},
                    {"function": "not an object"},
                    {"type": "custom"},
                ],
            },
            {"role": "tool", "content": "42"},
        ],
        "tools": [TOOL],
        "functions": [{"name": "g"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "b": [1, 2]}},
    }
    assert parse_chat(body) == ParsedRequest(
        model="gpt-4o",
        stream=True,
        max_output_tokens=100,
        messages=(
            PromptMessage("system", "be brief", name="ops"),
            PromptMessage("user", "look"),
            PromptMessage("assistant", 'get{"q":1}{}only'),
            PromptMessage("tool", "42"),
        ),
        extra_text=(
            '{"type":"function","function":{"name":"f","parameters":{"a":"é"}}}',
            '{"name":"g"}',
            '{"name":"s","b":[1,2]}',
        ),
        image_count=1,
    )


def test_a_chat_request_with_the_defaults() -> None:
    assert parse_chat({"model": "m", "messages": []}) == ParsedRequest(
        model="m", stream=False, max_output_tokens=None
    )
    # max_tokens when max_completion_tokens is absent; a json_object format is no text.
    body = {"model": "m", "messages": [], "max_tokens": 7, "response_format": {"type": "x"}}
    assert parse_chat(body) == ParsedRequest(model="m", stream=False, max_output_tokens=7)
    assert parse_chat({**body, "response_format": "json"}).extra_text == ()


def test_images_are_counted_across_messages() -> None:
    image = {"role": "user", "content": [{"type": "image_url"}, {"type": "input_image"}]}
    assert parse_chat({"model": "m", "messages": [image, image]}).image_count == 4


@pytest.mark.parametrize(("n", "budget"), [(1, 10), (MAX_CHOICES, 10 * MAX_CHOICES), (None, 10)])
def test_choices_multiply_the_budget_at_their_bounds(n: int | None, budget: int) -> None:
    body = {"model": "m", "messages": [], "max_tokens": 10, "n": n}
    assert parse_chat(body).max_output_tokens == budget


@pytest.mark.parametrize("n", [0, MAX_CHOICES + 1, True, "2", 1.0])
def test_choices_out_of_range_are_refused_exactly(n: object) -> None:
    assert error(parse_chat, {"model": "m", "messages": [], "n": n}) == (
        "'n' must be an integer from 1 to 128"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"model": "m", "messages": [{"role": "user", "tool_calls": {}}]},
            "'messages[0].tool_calls' must be an array, got object",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "tool_calls": [3]}]},
            "'messages[0].tool_calls[0]' must be an object, got integer",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "name": 3}]},
            "'messages[0].name' must be a string, got integer",
        ),
        (
            {"model": "m", "messages": [{"role": ""}]},
            "'messages[0].role' must be a non-empty string, got string",
        ),
        (
            {"model": "m", "messages": [], "functions": 1},
            "'functions' must be an array, got integer",
        ),
    ],
)
def test_chat_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    assert error(parse_chat, body) == message


def test_an_azure_deployment_path_decides_the_model_but_a_body_model_is_checked() -> None:
    body = {"messages": []}
    assert parse_chat(body, model_default="prod").model == "prod"
    assert parse_chat({**body, "model": "gpt-4"}, model_default="prod").model == "prod"
    assert error(parse_chat, {**body, "model": 4}, model_default="prod") == (
        "'model' must be a string, got integer"
    )
    assert error(parse_chat, {**body, "model": "m" * 257}, model_default="prod") == (
        "'model' must be at most 256 characters"
    )
    assert error(parse_chat, body) == "'model' is required"


# -- completions and embeddings ----------------------------------------------------------


def test_a_completion_request_in_full() -> None:
    body = {
        "model": "i",
        "prompt": ["a", [1, 2, 3], 7, "b"],
        "suffix": "end",
        "max_tokens": 5,
        "n": 2,
        "best_of": 3,
        "stream": True,
    }
    assert parse_completion(body) == ParsedRequest(
        model="i",
        stream=True,
        max_output_tokens=15,
        extra_text=("a", "b", "end"),
        pretokenized_tokens=4,
    )
    plain = parse_completion({"model": "i", "prompt": "x", "suffix": ""})
    assert plain == ParsedRequest(model="i", stream=False, max_output_tokens=16, extra_text=("x",))
    assert parse_completion({"prompt": "x"}, model_default="dep").model == "dep"
    assert parse_completion({"model": "i", "prompt": "x", "max_tokens": 0}).max_output_tokens == 0


def test_completion_errors_are_exact() -> None:
    assert error(parse_completion, {"model": "i"}) == "'prompt' is required"
    assert error(parse_completion, {"model": "i", "prompt": "x", "suffix": 1}) == (
        "'suffix' must be a string, got integer"
    )
    assert error(parse_completion, {"model": "i", "prompt": "x", "best_of": 0}) == (
        "'best_of' must be an integer from 1 to 128"
    )
    assert error(parse_completion, {"model": "i", "prompt": ["x", {}]}) == (
        "'prompt[1]' must be a string, a token id or an array of token ids, got object"
    )
    assert error(parse_completion, {"model": "i", "prompt": 5}) == (
        "'prompt' must be a string or an array, got integer"
    )
    assert error(parse_completion, {"model": "i", "prompt": "x", "n": 0}) == (
        "'n' must be an integer from 1 to 128"
    )


def test_a_completions_n_alone_multiplies_the_default_budget() -> None:
    assert parse_completion({"model": "i", "prompt": "x", "n": 3}).max_output_tokens == 48


def test_an_embedding_request_in_full() -> None:
    body = {"model": "e", "input": [[5, 6], "t"], "stream": True, "max_tokens": 9}
    assert parse_embedding(body) == ParsedRequest(
        model="e", stream=False, max_output_tokens=0, extra_text=("t",), pretokenized_tokens=2
    )
    assert parse_embedding({"input": "x"}, model_default="dep").model == "dep"
    assert error(parse_embedding, {"model": "e"}) == "'input' is required"
    assert error(parse_embedding, {"model": "e", "input": None}) == (
        "'input' must be a string or an array, got null"
    )


def test_text_or_tokens_every_shape() -> None:
    assert text_or_tokens("x", "p") == (["x"], 0)
    assert text_or_tokens([], "p") == ([], 0)
    assert text_or_tokens([[], [1], 2], "p") == ([], 2)
    assert text_or_tokens([[1, 2], [3], 4, [5, 6]], "p") == ([], 6)
    bad_items: list[tuple[list[Any], int, str]] = [
        ([True], 0, "boolean"),
        (["a", [1, "b"]], 1, "array"),
        (["a", None], 1, "null"),
    ]
    for bad, index, kind in bad_items:
        with pytest.raises(RequestError) as caught:
            text_or_tokens(bad, "p")
        assert str(caught.value) == (
            f"'p[{index}]' must be a string, a token id or an array of token ids, got {kind}"
        )
    with pytest.raises(RequestError) as caught:
        text_or_tokens(3, "p")
    assert str(caught.value) == "'p' must be a string or an array, got integer"


# -- responses --------------------------------------------------------------------------


def test_a_responses_request_in_full() -> None:
    body = {
        "model": "o4",
        "instructions": "be kind",
        "stream": True,
        "max_output_tokens": 64,
        "input": [
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "hi"}, {"type": "input_image"}],
            },
            {"type": "message", "role": "assistant", "content": "yo"},
            {"type": "function_call", "name": "f", "arguments": '{"x":1}'},
            {"type": "function_call"},
            {"type": "function_call_output", "output": "done"},
            {"type": "function_call_output", "output": {"k": ["v"]}},
            {"type": "reasoning", "summary": []},
        ],
        "tools": [TOOL],
    }
    assert parse_responses(body) == ParsedRequest(
        model="o4",
        stream=True,
        max_output_tokens=64,
        messages=(
            PromptMessage("developer", "be kind"),
            PromptMessage("user", "hi"),
            PromptMessage("assistant", "yo"),
        ),
        extra_text=(
            'f{"x":1}',
            "",
            "done",
            '{"k":["v"]}',
            '{"type":"function","function":{"name":"f","parameters":{"a":"é"}}}',
        ),
        image_count=1,
    )


def test_a_responses_request_with_a_string_or_no_input() -> None:
    assert parse_responses({"model": "o", "input": "q", "instructions": ""}) == ParsedRequest(
        model="o", stream=False, max_output_tokens=None, messages=(PromptMessage("user", "q"),)
    )
    assert parse_responses({"model": "o"}) == ParsedRequest(
        model="o", stream=False, max_output_tokens=None
    )
    assert parse_responses({"input": "q"}, model_default="dep").model == "dep"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "o", "input": [{"content": "x"}]}, "'input[0].role' is required"),
        ({"model": "o", "input": [{"type": "message"}]}, "'input[0].role' is required"),
        (
            {"model": "o", "input": [{"type": "x", "role": "user", "content": 1}]},
            "'input[0].content' must be a string or an array, got integer",
        ),
        ({"model": "o", "input": ["x"]}, "'input[0]' must be an object, got string"),
        ({"model": "o", "input": 3}, "'input' must be a string or an array, got integer"),
        ({"model": "o", "instructions": 3}, "'instructions' must be a string, got integer"),
        (
            {"model": "o", "max_output_tokens": -1},
            "'max_output_tokens' must be a non-negative integer, got integer",
        ),
    ],
)
def test_responses_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    assert error(parse_responses, body) == message


# -- the usage patch --------------------------------------------------------------------


def test_the_usage_patch_only_for_a_real_stream_lacking_it() -> None:
    assert include_usage_patch({"stream": "true"}) is None
    assert include_usage_patch({"stream": 1}) is None
    assert include_usage_patch({"stream": True, "stream_options": {"include_usage": 1}}) == {
        "stream_options": {"include_usage": True}
    }
    assert include_usage_patch({"stream": True, "stream_options": "x"}) == {
        "stream_options": {"include_usage": True}
    }
    options = {"include_usage": False, "y": 2}
    assert include_usage_patch({"stream": True, "stream_options": options}) == {
        "stream_options": {"include_usage": True, "y": 2}
    }
    assert options == {"include_usage": False, "y": 2}  # the body's own dict is not changed
