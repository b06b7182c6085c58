"""Google Gemini (Generative Language API): model and streaming named in the path."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from policy_sidecar.providers._decode import with_encoding
from policy_sidecar.providers._fields import compact_json, obj, opt_int, opt_list, req_list, wrong
from policy_sidecar.providers._usage import (
    CountTokensParser,
    JSONBodyParser,
    Raw,
    SniffingParser,
    SSEUsageParser,
    count_sum,
    int_fields,
)
from policy_sidecar.providers.base import ParsedRequest, PromptMessage, Route, Usage, UsageParser

_PATH = re.compile(
    r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^/:]+)"
    r":(?P<method>generateContent|streamGenerateContent|embedContent|batchEmbedContents"
    r"|countTokens)/?$",
    re.IGNORECASE,
)
_OPERATIONS = {
    "generatecontent": "generate",
    "streamgeneratecontent": "generate",
    "embedcontent": "embed",
    "batchembedcontents": "batch_embed",
    "counttokens": "count_tokens",
}
_FIELDS = {
    "promptTokenCount": "prompt",
    "candidatesTokenCount": "candidates",
    "thoughtsTokenCount": "thoughts",
    "cachedContentTokenCount": "cached",
    "totalTokenCount": "total",
}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def parts_text(content: Any, path: str) -> tuple[str, int]:
    """Text and inline/file media count of a Content object's ``parts``."""
    content = obj(content, path)
    texts: list[str] = []
    media = 0
    for i, part in enumerate(req_list(content, "parts", f"{path}.parts")):
        where = f"{path}.parts[{i}]"
        part = obj(part, where)
        if "text" in part:
            text = part["text"]
            if not isinstance(text, str):
                raise wrong(f"{where}.text", "a string", text)
            texts.append(text)
        elif "inlineData" in part or "fileData" in part:
            media += 1
        elif "functionCall" in part:
            texts.append(compact_json(part["functionCall"]))
        elif "functionResponse" in part:
            texts.append(compact_json(part["functionResponse"]))
    return "".join(texts), media


def parse_generate(route: Route, body: Mapping[str, Any]) -> ParsedRequest:
    messages: list[PromptMessage] = []
    media = 0
    system = body.get("systemInstruction", body.get("system_instruction"))
    if system is not None:
        text, n = parts_text(system, "systemInstruction")
        media += n
        messages.append(PromptMessage(role="system", text=text))
    for i, content in enumerate(req_list(body, "contents")):
        text, n = parts_text(content, f"contents[{i}]")
        media += n
        role = content.get("role", "user")
        messages.append(PromptMessage(role=role if isinstance(role, str) else "user", text=text))
    config = body.get("generationConfig")
    max_tokens = None
    if config is not None:
        max_tokens = opt_int(
            obj(config, "generationConfig"), "maxOutputTokens", "generationConfig.maxOutputTokens"
        )
    return ParsedRequest(
        model=route.model_from_path,
        stream=route.stream_from_path,
        max_output_tokens=max_tokens,
        messages=tuple(messages),
        extra_text=tuple(compact_json(tool) for tool in opt_list(body, "tools")),
        image_count=media,
    )


def parse_embed(route: Route, body: Mapping[str, Any]) -> ParsedRequest:
    text, media = parts_text(body.get("content"), "content")
    return ParsedRequest(
        model=route.model_from_path,
        stream=False,
        max_output_tokens=0,
        extra_text=(text,),
        image_count=media,
    )


def parse_batch_embed(route: Route, body: Mapping[str, Any]) -> ParsedRequest:
    """``batchEmbedContents``: ``{"requests": [EmbedContentRequest…]}``, tokens of every
    request's content (the API reports no usage: the estimate is what is metered)."""
    texts: list[str] = []
    media = 0
    for i, item in enumerate(req_list(body, "requests")):
        text, n = parts_text(obj(item, f"requests[{i}]").get("content"), f"requests[{i}].content")
        texts.append(text)
        media += n
    return ParsedRequest(
        model=route.model_from_path,
        stream=False,
        max_output_tokens=0,
        extra_text=tuple(texts),
        image_count=media,
    )


def parse_count_tokens(route: Route, body: Mapping[str, Any]) -> ParsedRequest:
    """``countTokens``: free, counted per request; nothing is estimated or reserved."""
    return ParsedRequest(
        model=route.model_from_path, stream=False, max_output_tokens=0, quantity=1.0
    )


def extract(obj: Any) -> Raw | None:
    if not isinstance(obj, dict):
        return None
    return int_fields(obj.get("usageMetadata"), _FIELDS) or None


def to_usage(raw: Raw) -> Usage | None:
    if "prompt" not in raw and "total" not in raw:
        return None
    prompt = raw.get("prompt", 0)
    completion = count_sum(raw.get("candidates", 0), raw.get("thoughts", 0))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=raw.get("total", prompt + completion),
        cached_tokens=raw.get("cached", 0),
        reasoning_tokens=raw.get("thoughts", 0),
    )


def _json() -> UsageParser:
    return JSONBodyParser(extract, to_usage, ("usageMetadata",))


def _sse() -> UsageParser:
    return SSEUsageParser(extract, to_usage, ('"usageMetadata"',), merge=False)


class GeminiProvider:
    """generativelanguage.googleapis.com ``models/{model}:{method}``."""

    name = "gemini"

    def match(self, method: str, path: str) -> Route | None:
        found = _PATH.match(path.partition("?")[0])
        if method != "POST" or found is None:
            return None
        return Route(
            self.name,
            _OPERATIONS[found["method"].lower()],
            model_from_path=found["model"],
            stream_from_path=found["method"].lower() == "streamgeneratecontent",
            api_version=found["version"].lower(),
        )

    def parse_request(self, route: Route, body: Mapping[str, Any]) -> ParsedRequest:
        if route.operation == "embed":
            return parse_embed(route, body)
        if route.operation == "batch_embed":
            return parse_batch_embed(route, body)
        if route.operation == "count_tokens":
            return parse_count_tokens(route, body)
        return parse_generate(route, body)

    def usage_parser(
        self, route: Route, *, streaming: bool, content_encoding: str | None = None
    ) -> UsageParser:
        # Without alt=sse a stream is one JSON array sent in pieces: sniff the framing.
        parser: UsageParser
        if route.operation == "count_tokens":
            parser = CountTokensParser("totalTokens")
        else:
            parser = SniffingParser(_json, _sse) if streaming else _json()
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
        # Google's error.details is an array of typed messages (client libraries iterate it),
        # so the policy details travel as a google.rpc.ErrorInfo's metadata.
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": code,
            "domain": "policy-sidecar",
            "metadata": {
                str(k): v if isinstance(v, str) else json.dumps(v) for k, v in details.items()
            },
        }
        error = {
            "code": status,
            "message": message,
            "status": _STATUS.get(status, "FAILED_PRECONDITION"),
            "details": [info],
        }
        return json.dumps({"error": error}, separators=(",", ":")).encode()

    def request_patch(self, route: Route, body: Mapping[str, Any]) -> dict[str, Any] | None:
        return None
