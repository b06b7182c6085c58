"""OpenAI: chat completions, completions, embeddings and the Responses API (JSON and SSE);
images, audio and moderation (``_openai_media``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from policy_sidecar.providers import _openai_request as req
from policy_sidecar.providers._decode import with_encoding
from policy_sidecar.providers._openai_media import MEDIA_PARSERS, media_usage_parser
from policy_sidecar.providers._usage import (
    JSONBodyParser,
    Raw,
    SSEUsageParser,
    int_fields,
    std_usage,
)
from policy_sidecar.providers.base import ParsedRequest, Route, UsageParser

_OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/v1/images/generations": "images",
    "/v1/images/edits": "image_edits",
    "/v1/audio/speech": "speech",
    "/v1/audio/transcriptions": "transcriptions",
    "/v1/audio/translations": "translations",
    "/v1/moderations": "moderations",
}

Parse = Callable[..., ParsedRequest]
PARSERS: dict[str, Parse] = {
    "chat": req.parse_chat,
    "completions": req.parse_completion,
    "embeddings": req.parse_embedding,
    "responses": req.parse_responses,
    **MEDIA_PARSERS,
}


def chat_raw(usage: Any) -> Raw | None:
    """Raw fields of a chat/completions/embeddings ``usage`` object."""
    if not isinstance(usage, dict):
        return None
    raw = int_fields(
        usage,
        {"prompt_tokens": "prompt", "completion_tokens": "completion", "total_tokens": "total"},
    )
    raw.update(int_fields(usage.get("prompt_tokens_details"), {"cached_tokens": "cached"}))
    raw.update(
        int_fields(usage.get("completion_tokens_details"), {"reasoning_tokens": "reasoning"})
    )
    return raw or None


def responses_raw(usage: Any) -> Raw | None:
    """Raw fields of a Responses API ``usage`` object (input/output naming)."""
    if not isinstance(usage, dict):
        return None
    raw = int_fields(
        usage, {"input_tokens": "prompt", "output_tokens": "completion", "total_tokens": "total"}
    )
    raw.update(int_fields(usage.get("input_tokens_details"), {"cached_tokens": "cached"}))
    raw.update(int_fields(usage.get("output_tokens_details"), {"reasoning_tokens": "reasoning"}))
    return raw or None


def extract_chat(obj: Any) -> Raw | None:
    return chat_raw(obj.get("usage")) if isinstance(obj, dict) else None


def extract_responses(obj: Any) -> Raw | None:
    if not isinstance(obj, dict):
        return None
    # Stream events (response.completed / .incomplete / .failed) wrap the response object.
    inner = obj.get("response")
    if isinstance(inner, dict):
        return responses_raw(inner.get("usage"))
    return responses_raw(obj.get("usage"))


def openai_usage_parser(operation: str, *, streaming: bool) -> UsageParser:
    if operation in MEDIA_PARSERS:
        return media_usage_parser(operation, streaming=streaming)
    if operation == "responses":
        if streaming:
            return SSEUsageParser(extract_responses, std_usage, ('"input_tokens"',), merge=False)
        return JSONBodyParser(extract_responses, std_usage, ("usage",))
    if streaming:
        # With include_usage every chunk carries "usage": null; only the last carries numbers.
        return SSEUsageParser(extract_chat, std_usage, ('"prompt_tokens"',), merge=False)
    return JSONBodyParser(extract_chat, std_usage, ("usage",))


def openai_error_body(
    *, message: str, error_type: str, code: str, details: Mapping[str, Any]
) -> bytes:
    error: dict[str, Any] = {
        "message": message,
        "type": error_type,
        "param": None,
        "code": code,
        "details": dict(details),
    }
    return json.dumps({"error": error}, separators=(",", ":")).encode()


class OpenAIWireFormat:
    """What OpenAI and Azure OpenAI share: usage extraction, the error shape, and the
    ``stream_options.include_usage`` patch."""

    def usage_parser(
        self, route: Route, *, streaming: bool, content_encoding: str | None = None
    ) -> UsageParser:
        parser = openai_usage_parser(route.operation, streaming=streaming)
        return with_encoding(parser, content_encoding)

    def error_body(
        self,
        *,
        message: str,
        error_type: str,
        code: str,
        status: int,
        details: Mapping[str, Any],
    ) -> bytes:
        return openai_error_body(message=message, error_type=error_type, code=code, details=details)

    def request_patch(self, route: Route, body: Mapping[str, Any]) -> dict[str, Any] | None:
        # The Responses API always reports usage in response.completed; embeddings don't stream.
        if route.operation in ("chat", "completions"):
            return req.include_usage_patch(body)
        return None


class OpenAIProvider(OpenAIWireFormat):
    """api.openai.com: matched on the exact path (query ignored), POST only."""

    name = "openai"

    def match(self, method: str, path: str) -> Route | None:
        if method != "POST":
            return None
        operation = _OPERATIONS.get(path.partition("?")[0].rstrip("/").lower())
        return Route(self.name, operation) if operation else None

    def parse_request(self, route: Route, body: Mapping[str, Any]) -> ParsedRequest:
        return PARSERS[route.operation](body)
