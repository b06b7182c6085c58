"""Anthropic, Cohere (v1 and v2) and Gemini bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_sidecar.fakeprovider.samples._common import (
    SampleResponse,
    dumps,
    json_response,
    pieces,
    sse,
    sse_response,
)
from policy_sidecar.providers.base import Usage


def _model(request: Mapping[str, Any], fallback: str) -> str:
    model = request.get("model")
    return model if isinstance(model, str) and model else fallback


def anthropic(
    request: Mapping[str, Any], usage: Usage, text: str, *, stream: bool
) -> SampleResponse:
    # Anthropic's input_tokens excludes cache reads: prompt = input + cache_read (+ creation).
    wire = {
        "input_tokens": usage.prompt_tokens - usage.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
        "service_tier": "standard",
    }
    message: dict[str, Any] = {
        "id": "msg_fake0001",
        "type": "message",
        "role": "assistant",
        "model": _model(request, "claude-sonnet-4-5"),
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": wire,
    }
    if not stream:
        return json_response(message)
    start = {**message, "content": [], "stop_reason": None, "usage": {**wire, "output_tokens": 1}}
    events = [
        sse({"type": "message_start", "message": start}, event="message_start"),
        sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            event="content_block_start",
        ),
        sse({"type": "ping"}, event="ping"),
    ]
    events += [
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            event="content_block_delta",
        )
        for piece in pieces(text)
    ]
    events += [
        sse({"type": "content_block_stop", "index": 0}, event="content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage.completion_tokens},
            },
            event="message_delta",
        ),
        sse({"type": "message_stop"}, event="message_stop"),
    ]
    return sse_response(events)


def _cohere_units(usage: Usage, *, embed: bool = False) -> dict[str, Any]:
    billed: dict[str, int] = {"input_tokens": usage.prompt_tokens}
    if not embed:
        billed["output_tokens"] = usage.completion_tokens
    return {"billed_units": billed, "tokens": dict(billed)}


def cohere_chat(
    request: Mapping[str, Any], usage: Usage, text: str, *, stream: bool, version: str
) -> SampleResponse:
    units = _cohere_units(usage)
    if version == "v1":
        meta = {"api_version": {"version": "1"}, **units}
        body = {
            "response_id": "fake-resp-0001",
            "text": text,
            "generation_id": "fake-gen-0001",
            "chat_history": [],
            "finish_reason": "COMPLETE",
            "meta": meta,
        }
        if not stream:
            return json_response(body)
        lines = [
            {"is_finished": False, "event_type": "stream-start", "generation_id": "fake-gen-0001"}
        ]
        lines += [
            {"is_finished": False, "event_type": "text-generation", "text": p} for p in pieces(text)
        ]
        lines.append(
            {
                "is_finished": True,
                "event_type": "stream-end",
                "response": body,
                "finish_reason": "COMPLETE",
            }
        )
        return SampleResponse(
            "application/stream+json", tuple((dumps(line) + "\n").encode() for line in lines)
        )
    message = {"role": "assistant", "content": [{"type": "text", "text": text}]}
    if not stream:
        return json_response(
            {"id": "fake-0001", "finish_reason": "COMPLETE", "message": message, "usage": units}
        )
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [
        sse(
            {"id": "fake-0001", "type": "message-start", "delta": {"message": start}},
            event="message-start",
        ),
        sse(
            {
                "type": "content-start",
                "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}},
            },
            event="content-start",
        ),
    ]
    events += [
        sse(
            {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": p}}}},
            event="content-delta",
        )
        for p in pieces(text)
    ]
    events += [
        sse({"type": "content-end", "index": 0}, event="content-end"),
        sse(
            {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": units}},
            event="message-end",
        ),
        sse("[DONE]"),
    ]
    return sse_response(events)


def cohere_embed(request: Mapping[str, Any], usage: Usage, *, version: str) -> SampleResponse:
    texts = request.get("texts")
    texts = texts if isinstance(texts, list) else []
    vectors = [[0.016296387, -0.008354187, -0.04699707] for _ in texts]
    meta = {"api_version": {"version": version[1:]}, **_cohere_units(usage, embed=True)}
    embeddings: Any = vectors if version == "v1" else {"float": vectors}
    return json_response(
        {"id": "fake-embed-0001", "embeddings": embeddings, "texts": texts, "meta": meta}
    )


def _gemini_usage(usage: Usage, completion: int) -> dict[str, int]:
    meta = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": max(completion - usage.reasoning_tokens, 0),
        "totalTokenCount": usage.prompt_tokens + completion,
    }
    if usage.reasoning_tokens:
        meta["thoughtsTokenCount"] = usage.reasoning_tokens
    if usage.cached_tokens:
        meta["cachedContentTokenCount"] = usage.cached_tokens
    return meta


def gemini(
    model: str, usage: Usage, text: str, *, stream: bool, sse_framing: bool = True
) -> SampleResponse:
    def chunk(part: str, completion: int, *, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": part}], "role": "model"},
            "index": 0,
        }
        if last:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": _gemini_usage(usage, completion),
            "modelVersion": model,
            "responseId": "fakeResp0001",
        }

    if not stream:
        return json_response(chunk(text, usage.completion_tokens, last=True))
    parts = pieces(text)
    objects = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        # Usage grows chunk by chunk; the last chunk carries the final numbers.
        grown = (
            usage.completion_tokens
            if last
            else min(i + 1 + usage.reasoning_tokens, usage.completion_tokens)
        )
        objects.append(chunk(part, grown, last=last))
    if sse_framing:
        return sse_response([sse(obj) for obj in objects])
    body = ["[" + dumps(objects[0])] + ["\n,\r\n" + dumps(obj) for obj in objects[1:]] + ["]"]
    return SampleResponse("application/json", tuple(piece.encode() for piece in body))
