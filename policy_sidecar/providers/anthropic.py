"""Anthropic Messages API (``/v1/messages``), JSON and SSE; token counting
(``/v1/messages/count_tokens``: free, counted per request)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policy_sidecar.providers._decode import with_encoding
from policy_sidecar.providers._fields import (
    compact_json,
    obj,
    opt_bool,
    opt_int,
    opt_list,
    req_list,
    req_model,
    req_str,
    wrong,
)
from policy_sidecar.providers._usage import (
    CountTokensParser,
    JSONBodyParser,
    Raw,
    SSEUsageParser,
    count_sum,
    int_fields,
)
from policy_sidecar.providers.base import ParsedRequest, PromptMessage, Route, Usage, UsageParser

_FIELDS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_input_tokens": "cache_read",
    "cache_creation_input_tokens": "cache_creation",
}
# usage.cache_creation splits the cache writes by lifetime; each has its own premium.
_CACHE_WRITES = {"ephemeral_5m_input_tokens": "cw5m", "ephemeral_1h_input_tokens": "cw1h"}


def _fields(usage: Any) -> Raw:
    raw = int_fields(usage, _FIELDS)
    if isinstance(usage, dict):
        raw.update(int_fields(usage.get("cache_creation"), _CACHE_WRITES))
    return raw


def blocks_text(content: Any, path: str) -> tuple[str, int]:
    """Text and image count of a content string or array of content blocks."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise wrong(path, "a string or an array", content)
    texts: list[str] = []
    images = 0
    for i, block in enumerate(content):
        where = f"{path}[{i}]"
        block = obj(block, where)
        kind = block.get("type")
        if kind == "text":
            texts.append(req_str(block, "text", f"{where}.text"))
        elif kind == "image":
            images += 1
        elif kind == "tool_use":
            texts.append(str(block.get("name", "")) + compact_json(block.get("input", {})))
        elif kind == "tool_result":
            text, n = blocks_text(block.get("content", ""), f"{where}.content")
            texts.append(text)
            images += n
        elif kind == "thinking":
            texts.append(str(block.get("thinking", "")))
        elif not isinstance(kind, str):
            raise wrong(f"{where}.type", "a string", kind)
        # documents, redacted thinking and server tool blocks are not estimated.
    return "".join(texts), images


def parse_messages(body: Mapping[str, Any]) -> ParsedRequest:
    messages: list[PromptMessage] = []
    images = 0
    if body.get("system") is not None:
        text, n = blocks_text(body["system"], "system")
        images += n
        messages.append(PromptMessage(role="system", text=text))
    for i, raw in enumerate(req_list(body, "messages")):
        path = f"messages[{i}]"
        message = obj(raw, path)
        role = req_str(message, "role", f"{path}.role")
        if "content" not in message:
            raise wrong(f"{path}.content", "a string or an array", None)
        text, n = blocks_text(message["content"], f"{path}.content")
        images += n
        messages.append(PromptMessage(role=role, text=text))
    tools = tuple(compact_json(tool) for tool in opt_list(body, "tools"))
    return ParsedRequest(
        model=req_model(body),
        stream=opt_bool(body, "stream"),
        max_output_tokens=opt_int(body, "max_tokens"),
        messages=tuple(messages),
        extra_text=tools,
        image_count=images,
    )


def extract(obj: Any) -> Raw | None:
    if not isinstance(obj, dict):
        return None
    # message_start nests the message; message_delta and JSON bodies have usage on top.
    message = obj.get("message")
    usage = message.get("usage") if isinstance(message, dict) else obj.get("usage")
    return billed_iterations(usage) or _fields(usage) or None


def billed_iterations(usage: Any) -> Raw | None:
    """The sum over ``usage.iterations``, or None when there are none.

    A response that ran server-side compaction reports each sampling step it billed
    (the compaction summary, then the message) in ``usage.iterations``; the top-level
    figures are the last step's only and leave the compaction out. What is billed, and
    so what is metered, is the sum over the iterations.
    """
    iterations = usage.get("iterations") if isinstance(usage, dict) else None
    if not isinstance(iterations, list):
        return None
    total: Raw = {}
    for step in iterations:
        for name, value in _fields(step).items():
            total[name] = count_sum(total.get(name, 0), value)
    return total or None


def to_usage(raw: Raw) -> Usage | None:
    if "input" not in raw and "output" not in raw:
        return None
    cache_read = raw.get("cache_read", 0)
    prompt = count_sum(raw.get("input", 0), cache_read, raw.get("cache_creation", 0))
    completion = raw.get("output", 0)
    # Without the split every cache write is a 5-minute one (the default lifetime).
    write_1h = raw.get("cw1h", 0)
    write_5m = raw.get("cw5m", max(raw.get("cache_creation", 0) - write_1h, 0))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cached_tokens=cache_read,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
    )


def parse_count_tokens(body: Mapping[str, Any]) -> ParsedRequest:
    """``/v1/messages/count_tokens``: the messages body without ``max_tokens``. Free:
    no tokens are charged, the request is counted."""
    req_list(body, "messages")
    return ParsedRequest(model=req_model(body), stream=False, max_output_tokens=0, quantity=1.0)


class AnthropicProvider:
    """api.anthropic.com ``POST /v1/messages``."""

    name = "anthropic"

    def match(self, method: str, path: str) -> Route | None:
        if method != "POST":
            return None
        path = path.partition("?")[0].rstrip("/").lower()
        if path == "/v1/messages":
            return Route(self.name, "messages")
        if path == "/v1/messages/count_tokens":
            return Route(self.name, "count_tokens")
        return None

    def parse_request(self, route: Route, body: Mapping[str, Any]) -> ParsedRequest:
        if route.operation == "count_tokens":
            return parse_count_tokens(body)
        return parse_messages(body)

    def usage_parser(
        self, route: Route, *, streaming: bool, content_encoding: str | None = None
    ) -> UsageParser:
        parser: UsageParser
        if route.operation == "count_tokens":
            parser = CountTokensParser("input_tokens")
        elif streaming:
            # message_start sets the baseline; message_delta updates fields one by one.
            needles = ('"output_tokens"', '"input_tokens"')
            parser = SSEUsageParser(extract, to_usage, needles, merge=True)
        else:
            parser = JSONBodyParser(extract, to_usage, ("usage",))
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
        error = {"type": error_type, "message": message, "details": dict(details)}
        return json.dumps({"type": "error", "error": error}, separators=(",", ":")).encode()

    def request_patch(self, route: Route, body: Mapping[str, Any]) -> dict[str, Any] | None:
        return None
