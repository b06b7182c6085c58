"""OpenAI and Azure OpenAI bodies: chat, completions, embeddings, Responses API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_sidecar.fakeprovider.samples._common import (
    SampleResponse,
    json_response,
    pieces,
    sse,
    sse_response,
)
from policy_sidecar.providers.base import Usage

CREATED = 1741570283
_SAFE = {"filtered": False, "severity": "safe"}
_FILTERS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}


def chat_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _model(request: Mapping[str, Any], fallback: str) -> str:
    model = request.get("model")
    return model if isinstance(model, str) and model else fallback


def _wants_usage(request: Mapping[str, Any]) -> bool:
    options = request.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def chat(
    request: Mapping[str, Any], usage: Usage, text: str, *, stream: bool, azure: bool = False
) -> SampleResponse:
    model = _model(request, "gpt-4o-mini")
    base: dict[str, Any] = {"id": "chatcmpl-fake0001", "created": CREATED, "model": model}
    base["system_fingerprint"] = "fp_fake"
    if not stream:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
        body: dict[str, Any] = {**base, "object": "chat.completion", "choices": [choice]}
        if azure:
            choice["content_filter_results"] = _FILTERS
            body["prompt_filter_results"] = [
                {"prompt_index": 0, "content_filter_results": _FILTERS}
            ]
        body["usage"] = chat_usage(usage)
        return json_response(body)
    with_usage = _wants_usage(request)
    chunk = {**base, "object": "chat.completion.chunk"}
    events: list[bytes] = []
    if azure:
        events.append(
            sse(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": _FILTERS}
                    ],
                }
            )
        )
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in pieces(text)]
    for delta in deltas:
        event = {
            **chunk,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
        }
        if with_usage:
            event["usage"] = None
        events.append(sse(event))
    last = {
        **chunk,
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
    }
    if with_usage:
        last["usage"] = None
    events.append(sse(last))
    if with_usage:
        events.append(sse({**chunk, "choices": [], "usage": chat_usage(usage)}))
    events.append(sse("[DONE]"))
    return sse_response(events)


def completion(
    request: Mapping[str, Any], usage: Usage, text: str, *, stream: bool
) -> SampleResponse:
    model = _model(request, "gpt-3.5-turbo-instruct")
    base = {"id": "cmpl-fake0001", "object": "text_completion", "created": CREATED, "model": model}
    plain = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if not stream:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
        return json_response({**base, "choices": [choice], "usage": plain})
    events = [
        sse(
            {
                **base,
                "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}],
            }
        )
        for piece in pieces(text)
    ]
    if _wants_usage(request):
        events.append(sse({**base, "choices": [], "usage": plain}))
    events.append(sse("[DONE]"))
    return sse_response(events)


def embeddings(request: Mapping[str, Any], usage: Usage) -> SampleResponse:
    raw = request.get("input")
    count = len(raw) if isinstance(raw, list) and raw and not isinstance(raw[0], int) else 1
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": [0.0023064255, -0.009327292, -0.0028842222, 0.012039087],
        }
        for i in range(count)
    ]
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": _model(request, "text-embedding-3-small"),
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens},
        }
    )


def _response_object(model: str, text: str, usage: Usage | None, status: str) -> dict[str, Any]:
    output = (
        []
        if usage is None
        else [
            {
                "id": "msg_fake0001",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
    )
    body: dict[str, Any] = {
        "id": "resp_fake0001",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "error": None,
        "model": model,
        "output": output,
    }
    body["usage"] = (
        None
        if usage is None
        else {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens,
        }
    )
    return body


def responses(
    request: Mapping[str, Any], usage: Usage, text: str, *, stream: bool
) -> SampleResponse:
    model = _model(request, "gpt-4o-mini")
    if not stream:
        return json_response(_response_object(model, text, usage, "completed"))
    seq = 0

    def event(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        return sse({"type": kind, "sequence_number": seq - 1, **fields}, event=kind)

    item = {
        "id": "msg_fake0001",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    where = {"item_id": "msg_fake0001", "output_index": 0, "content_index": 0}
    events = [
        event("response.created", response=_response_object(model, text, None, "in_progress")),
        event("response.in_progress", response=_response_object(model, text, None, "in_progress")),
        event("response.output_item.added", output_index=0, item=item),
    ]
    events += [event("response.output_text.delta", **where, delta=p) for p in pieces(text)]
    events.append(event("response.output_text.done", **where, text=text))
    events.append(
        event("response.completed", response=_response_object(model, text, usage, "completed"))
    )
    return sse_response(events)
