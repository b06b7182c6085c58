"""A usage count made of several reported parts is negative when a part is, so the
clamp rejects it (usage/clamp.py) instead of a sane-looking sum under-charging."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy_sidecar.providers import Route, default_registry
from policy_sidecar.providers._usage import count_sum
from policy_sidecar.providers.base import Usage

ANTHROPIC = Route("anthropic", "messages")
GEMINI = Route("gemini", "generate", model_from_path="gemini-2.5-flash")


def parse(route: Route, body: dict[str, Any]) -> Usage | None:
    provider = default_registry().get(route.provider)
    parser = provider.usage_parser(route, streaming=False)
    parser.feed(json.dumps(body).encode())
    return parser.finish()


def test_count_sum() -> None:
    assert count_sum(1, 2, 3) == 6
    assert count_sum() == 0
    assert count_sum(-1000, 5000) == -1
    assert count_sum(count_sum(5, -1), 7) == -1  # stays rejected across steps


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": -1000, "cache_read_input_tokens": 5000, "output_tokens": 7},
        {"input_tokens": 10, "cache_creation_input_tokens": -3, "output_tokens": 7},
        # Compaction: the sum over the billed iterations.
        {
            "input_tokens": 10,
            "output_tokens": 7,
            "iterations": [
                {"input_tokens": -500, "output_tokens": 3},
                {"input_tokens": 900, "output_tokens": 7},
            ],
        },
    ],
)
def test_anthropic_prompt_with_a_negative_part_is_negative(usage: dict[str, Any]) -> None:
    body = {"type": "message", "role": "assistant", "content": [], "usage": usage}
    parsed = parse(ANTHROPIC, body)
    assert parsed is not None and parsed.prompt_tokens < 0


def test_gemini_completion_with_a_negative_part_is_negative() -> None:
    meta = {"promptTokenCount": 10, "candidatesTokenCount": -5, "thoughtsTokenCount": 40}
    parsed = parse(GEMINI, {"candidates": [], "usageMetadata": meta})
    assert parsed is not None and parsed.completion_tokens < 0 and parsed.prompt_tokens == 10
