"""OpenAI: chat completions (JSON and SSE)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policy_sidecar.providers.base import (
    ParsedRequest,
    PromptMessage,
    RequestError,
    Route,
    Usage,
    UsageParser,
)
from policy_sidecar.providers.sse import SSEDecoder

_OPERATIONS = {"/v1/chat/completions": "chat"}


def usage_from_openai(obj: Any) -> Usage | None:
    """Usage from an OpenAI-shaped ``usage`` object, or None if it is not one."""
    if not isinstance(obj, dict):
        return None
    prompt = _int(obj.get("prompt_tokens"))
    completion = _int(obj.get("completion_tokens"))
    if prompt is None and completion is None:
        return None
    prompt = prompt or 0
    completion = completion or 0
    total = _int(obj.get("total_tokens"))
    details = obj.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else None
    cdetails = obj.get("completion_tokens_details")
    reasoning = _int(cdetails.get("reasoning_tokens")) if isinstance(cdetails, dict) else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total if total is not None else prompt + completion,
        cached_tokens=cached or 0,
        reasoning_tokens=reasoning or 0,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class JSONUsageParser:
    """Buffers a JSON body and reads ``usage`` at the end."""

    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def finish(self) -> Usage | None:
        try:
            body = json.loads(b"".join(self._chunks))
        except ValueError:
            return None
        return usage_from_openai(body.get("usage")) if isinstance(body, dict) else None


class SSEUsageParser:
    """Reads the usage chunk of an OpenAI stream; the last usage seen wins."""

    __slots__ = ("_decoder", "_usage")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._usage: Usage | None = None

    def feed(self, chunk: bytes) -> None:
        for event in self._decoder.feed(chunk):
            self._event(event.data)

    def finish(self) -> Usage | None:
        for event in self._decoder.close():
            self._event(event.data)
        return self._usage

    def _event(self, data: str) -> None:
        # Only the usage chunk is decoded: content chunks are skipped by a substring test.
        if '"usage"' not in data:
            return
        try:
            obj = json.loads(data)
        except ValueError:
            return
        if isinstance(obj, dict):
            usage = usage_from_openai(obj.get("usage"))
            if usage is not None:
                self._usage = usage


def openai_error_body(
    *, message: str, error_type: str, code: str, details: Mapping[str, Any]
) -> bytes:
    error: dict[str, Any] = {"message": message, "type": error_type, "param": None, "code": code}
    error.update(details)
    return json.dumps({"error": error}, separators=(",", ":")).encode()


class OpenAIProvider:
    name = "openai"

    def match(self, method: str, path: str) -> Route | None:
        if method != "POST":
            return None
        operation = _OPERATIONS.get(path.partition("?")[0])
        return Route(self.name, operation) if operation else None

    def parse_request(self, route: Route, body: Mapping[str, Any]) -> ParsedRequest:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise RequestError("'model' must be a non-empty string")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise RequestError("'stream' must be a boolean")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and _int(max_tokens) is None:
            raise RequestError("'max_tokens' must be an integer")
        raw_messages = body.get("messages")
        if not isinstance(raw_messages, list):
            raise RequestError("'messages' must be an array")
        messages: list[PromptMessage] = []
        for i, m in enumerate(raw_messages):
            if not isinstance(m, dict):
                raise RequestError(f"'messages[{i}]' must be an object")
            content = m.get("content")
            text = content if isinstance(content, str) else ""
            messages.append(PromptMessage(role=str(m.get("role", "")), text=text))
        return ParsedRequest(
            model=model, stream=stream, max_output_tokens=max_tokens, messages=tuple(messages)
        )

    def usage_parser(self, route: Route, *, streaming: bool) -> UsageParser:
        return SSEUsageParser() if streaming else JSONUsageParser()

    def error_body(
        self, *, message: str, error_type: str, code: str, status: int, details: Mapping[str, Any]
    ) -> bytes:
        return openai_error_body(message=message, error_type=error_type, code=code, details=details)

    def request_patch(self, route: Route, body: Mapping[str, Any]) -> dict[str, Any] | None:
        if not body.get("stream"):
            return None
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return None
        merged = dict(options) if isinstance(options, dict) else {}
        merged["include_usage"] = True
        return {"stream_options": merged}
