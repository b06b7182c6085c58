"""OpenAI chat completions: realistic JSON and SSE bodies with ``usage``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")
DEFAULT_COMPLETION_TOKENS = 12


def prompt_tokens_of(body: Mapping[str, Any]) -> int:
    """A stand-in for the real tokenizer: about four characters a token, plus the
    OpenAI chat overhead of three tokens a message and three for the reply."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    chars = sum(len(m.get("content") or "") for m in messages if isinstance(m, dict))
    return max(1, chars // 4) + 3 * len(messages) + 3


def completion_length(body: Mapping[str, Any]) -> int:
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and limit > 0:
        return limit
    return DEFAULT_COMPLETION_TOKENS


def completion_words(n: int) -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(n)]


def usage(body: Mapping[str, Any]) -> dict[str, Any]:
    prompt = prompt_tokens_of(body)
    completion = completion_length(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_json(body: Mapping[str, Any], *, request_id: str) -> bytes:
    words = completion_words(completion_length(body))
    return json.dumps(
        {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(body),
            "service_tier": "default",
        }
    ).encode()


def chat_sse(body: Mapping[str, Any], *, request_id: str) -> Iterator[bytes]:
    """One SSE event per token, a finish chunk, the usage chunk if asked for, [DONE]."""
    base = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "gpt-4o-mini"),
        "system_fingerprint": "fp_fake",
    }
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    extra = {"usage": None} if include_usage else {}

    def event(obj: Mapping[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    first = {"role": "assistant", "content": "", "refusal": None}
    yield event({**base, "choices": [{"index": 0, "delta": first, "finish_reason": None}], **extra})
    for word in completion_words(completion_length(body)):
        delta = {"content": word}
        yield event(
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}
        )
    yield event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], **extra})
    if include_usage:
        yield event({**base, "choices": [], "usage": usage(body)})
    yield b"data: [DONE]\n\n"
