"""The fake provider's answers to the non-token routes: images, audio, moderation,
rerank, token counting and batch embeddings.

Shapes transcribed from the providers' public API references (OpenAI images, audio and
moderations; Cohere ``/v2/rerank``; Anthropic ``/v1/messages/count_tokens``; Gemini
``countTokens`` and ``batchEmbedContents``), with the quantities a real provider would
bill: one image per ``n``, the upload's duration (exact for a WAV file), one search
unit per 100 documents.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from policy_sidecar.providers._multipart import UploadedFile
from policy_sidecar.providers._openai_media import audio_seconds_estimate
from policy_sidecar.providers.base import Route

__all__ = ["MEDIA_OPERATIONS", "is_media", "media_answer"]

MEDIA_OPERATIONS = frozenset(
    {
        "images",
        "image_edits",
        "speech",
        "transcriptions",
        "translations",
        "moderations",
        "rerank",
        "count_tokens",
        "batch_embed",
    }
)


def is_media(route: Route) -> bool:
    """Whether ``media_answer`` answers this route (Gemini's embedContent too: its
    answer is an embedding without usage, unlike the generate samples)."""
    return route.operation in MEDIA_OPERATIONS or (route.provider, route.operation) == (
        "gemini",
        "embed",
    )


_CREATED = 1713833628
# A 1x1 PNG, as the images API returns base64 images (b64_json).
_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def _json(body: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(body).encode()


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 1


def _images(request: dict[str, Any]) -> tuple[str, bytes]:
    n = _count(request.get("n", 1))
    body: dict[str, Any] = {
        "created": _CREATED,
        "data": [{"b64_json": _PNG, "revised_prompt": request.get("prompt")} for _ in range(n)],
    }
    return _json(body)


def _transcription(route: Route, request: dict[str, Any], prompt_tokens: int) -> tuple[str, bytes]:
    upload = request.get("file")
    seconds = audio_seconds_estimate(upload) if isinstance(upload, UploadedFile) else 0.0
    text = "The quick brown fox jumps over the lazy dog."
    fmt = request.get("response_format", "json")
    if fmt == "text":
        return "text/plain", text.encode()
    if fmt == "verbose_json":
        return _json(
            {
                "task": "transcribe" if route.operation == "transcriptions" else "translate",
                "language": "english",
                "duration": round(seconds, 2),
                "text": text,
                "segments": [],
                "usage": {"type": "duration", "seconds": math.ceil(seconds)},
            }
        )
    return _json({"text": text})


def _moderation(request: dict[str, Any]) -> tuple[str, bytes]:
    inputs = request.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    result = {
        "flagged": False,
        "categories": {"harassment": False, "violence": False},
        "category_scores": {"harassment": 0.0001, "violence": 0.0002},
    }
    return _json(
        {
            "id": "modr-0d9740456c391e43c445bf0f010940c7",
            "model": request.get("model") or "omni-moderation-latest",
            "results": [result] * count,
        }
    )


def _rerank(route: Route, request: dict[str, Any]) -> tuple[str, bytes]:
    documents = request.get("documents")
    count = len(documents) if isinstance(documents, list) else 0
    results = [{"index": i, "relevance_score": round(0.9 / (i + 1), 4)} for i in range(count)]
    return _json(
        {
            "id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
            "results": results[: _count(request.get("top_n", count))] if count else [],
            "meta": {
                "api_version": {"version": "2" if route.api_version == "v2" else "1"},
                "billed_units": {"search_units": max(1, math.ceil(count / 100))},
            },
        }
    )


def media_answer(route: Route, request: dict[str, Any], prompt_tokens: int) -> tuple[str, bytes]:
    """``(content type, body)`` of the fake's answer to a non-token route."""
    match route.operation:
        case "images" | "image_edits":
            return _images(request)
        case "speech":
            text = str(request.get("input", ""))
            # Audio bytes (an MP3 frame header, then filler): never JSON.
            return "audio/mpeg", b"\xff\xfb\x90\x64" + b"\x00" * (len(text) * 40)
        case "transcriptions" | "translations":
            return _transcription(route, request, prompt_tokens)
        case "moderations":
            return _moderation(request)
        case "rerank":
            return _rerank(route, request)
        case "count_tokens" if route.provider == "anthropic":
            return _json({"input_tokens": prompt_tokens})
        case "count_tokens":
            return _json(
                {
                    "totalTokens": prompt_tokens,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                }
            )
        case "embed":
            return _json({"embedding": {"values": [0.013, -0.008, 0.021]}})
        case "batch_embed":
            requests = request.get("requests")
            count = len(requests) if isinstance(requests, list) else 0
            return _json({"embeddings": [{"values": [0.013, -0.008, 0.021]}] * count})
    raise ValueError(f"no fake answer for {route.operation}")
