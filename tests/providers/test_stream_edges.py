"""Stream framing and route edges found by mutation testing (the `sse`, `_usage`,
`openai` and `anthropic` survivors of the run that covered what earlier runs missed)."""

from __future__ import annotations

import json

import pytest

from policy_sidecar.providers.anthropic import AnthropicProvider
from policy_sidecar.providers.openai import OpenAIProvider, openai_usage_parser
from policy_sidecar.providers.sse import LineSplitter


def test_a_body_opening_with_a_line_feed_keeps_that_empty_line() -> None:
    # No CR came before it: the LF ends an (empty) line of its own.
    assert LineSplitter().feed(b"\na\n") == [b"", b"a"]


def test_crlf_is_one_line_break() -> None:
    assert LineSplitter().feed(b"a\r\nb\r\n") == [b"a", b"b"]


def test_close_joins_the_held_parts_byte_for_byte() -> None:
    lines = LineSplitter()
    assert lines.feed(b"da") == []
    assert lines.feed(b"ta") == []
    assert lines.close() == [b"data"]


def _sse(*payloads: dict[str, object], end: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return body if end else body[:-2]


def test_the_last_usage_event_is_taken_whole_not_merged_with_earlier_ones() -> None:
    # Two usage events: the last wins as it is; a detail only the first had is not kept.
    first = {
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 1,
            "total_tokens": 8,
            "prompt_tokens_details": {"cached_tokens": 4},
        }
    }
    last = {"usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    parser = openai_usage_parser("chat", streaming=True)
    parser.feed(_sse(first, last))
    usage = parser.finish()
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (7, 3, 0)

    responses = openai_usage_parser("responses", streaming=True)
    done = {
        "type": "response.completed",
        "response": {"usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}},
    }
    early = {
        "type": "response.in_progress",
        "response": {
            "usage": {
                "input_tokens": 5,
                "output_tokens": 1,
                "total_tokens": 6,
                "input_tokens_details": {"cached_tokens": 3},
            }
        },
    }
    responses.feed(_sse(early, done))
    usage = responses.finish()
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (5, 2, 0)


def test_a_last_event_without_its_blank_line_is_still_read() -> None:
    parser = openai_usage_parser("chat", streaming=True)
    usage_event = {"usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}
    parser.feed(_sse({"choices": []}, usage_event, end=False))
    usage = parser.finish()
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, 2)


def test_a_stream_without_usage_reports_none() -> None:
    parser = openai_usage_parser("chat", streaming=True)
    parser.feed(_sse({"choices": [{"delta": {"content": "hi"}}]}, {"usage": None}))
    assert parser.finish() is None


@pytest.mark.parametrize(
    ("path", "known"),
    [
        ("/v1/chat/completions/", True),
        ("/v1/chat/completionsX", False),
        ("/v1/chat/completions ", False),
    ],
)
def test_openai_paths_lose_only_trailing_slashes(path: str, known: bool) -> None:
    assert (OpenAIProvider().match("POST", path) is not None) is known


@pytest.mark.parametrize(("path", "known"), [("/v1/messages/", True), ("/v1/messagesX", False)])
def test_anthropic_paths_lose_only_trailing_slashes(path: str, known: bool) -> None:
    assert (AnthropicProvider().match("POST", path) is not None) is known
