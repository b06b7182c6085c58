"""Cohere chat, embed and rerank, API v1 and v2 (JSON, v2 SSE, v1 newline-delimited JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from policy_sidecar.providers._decode import with_encoding
from policy_sidecar.providers._fields import (
    compact_json,
    first_int,
    obj,
    opt_bool,
    opt_list,
    opt_model,
    opt_str,
    req_list,
    req_model,
    req_str,
    wrong,
)
from policy_sidecar.providers._openai_request import content_text
from policy_sidecar.providers._usage import (
    JSONBodyParser,
    NDJSONUsageParser,
    Raw,
    SSEUsageParser,
    std_usage,
)
from policy_sidecar.providers.base import ParsedRequest, PromptMessage, Route, Usage, UsageParser
from policy_sidecar.providers.window import last_member_value

_ROUTES = {
    "/v1/chat": ("chat", "v1"),
    "/v2/chat": ("chat", "v2"),
    "/v1/embed": ("embed", "v1"),
    "/v2/embed": ("embed", "v2"),
    "/v1/rerank": ("rerank", "v1"),
    "/v2/rerank": ("rerank", "v2"),
}
# One search unit is one query with up to 100 documents (Cohere's pricing FAQ); the
# request's estimate, replaced by the response's meta.billed_units.search_units.
DOCUMENTS_PER_SEARCH_UNIT = 100


def _count(value: Any) -> int | None:
    # The API types these as numbers; integral floats (7.0) are accepted.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _units(meta: Any) -> Raw | None:
    """billed_units (what is charged) field by field, falling back to tokens."""
    if not isinstance(meta, dict):
        return None
    raw: Raw = {}
    for source in ("tokens", "billed_units"):
        block = meta.get(source)
        if not isinstance(block, dict):
            continue
        for wire, name in (("input_tokens", "prompt"), ("output_tokens", "completion")):
            value = _count(block.get(wire))
            if value is not None:
                raw[name] = value
    return raw or None


def extract(obj: Any) -> Raw | None:
    if not isinstance(obj, dict):
        return None
    # v2 JSON: usage; v2 message-end: delta.usage; v1 JSON and embed: meta;
    # v1 stream-end: response.meta.
    for holder in (obj, obj.get("delta"), obj.get("response")):
        if isinstance(holder, dict):
            for key in ("usage", "meta"):
                raw = _units(holder.get(key))
                if raw:
                    return raw
    return None


def _parse_v1_chat(body: Mapping[str, Any]) -> ParsedRequest:
    messages: list[PromptMessage] = []
    preamble = opt_str(body, "preamble")
    if preamble:
        messages.append(PromptMessage(role="system", text=preamble))
    for i, turn in enumerate(opt_list(body, "chat_history")):
        turn = obj(turn, f"chat_history[{i}]")
        text = opt_str(turn, "message", f"chat_history[{i}].message") or ""
        messages.append(PromptMessage(role=str(turn.get("role", "")), text=text))
    messages.append(PromptMessage(role="USER", text=req_str(body, "message")))
    extra = [compact_json(d) for d in opt_list(body, "documents")]
    extra += [compact_json(t) for t in opt_list(body, "tools")]
    extra += [compact_json(t) for t in opt_list(body, "tool_results")]
    return ParsedRequest(
        model=opt_model(body),
        stream=opt_bool(body, "stream"),
        max_output_tokens=first_int(body, "max_tokens"),
        messages=tuple(messages),
        extra_text=tuple(extra),
    )


def _parse_v2_chat(body: Mapping[str, Any]) -> ParsedRequest:
    messages: list[PromptMessage] = []
    images = 0
    for i, raw in enumerate(req_list(body, "messages")):
        path = f"messages[{i}]"
        message = obj(raw, path)
        role = req_str(message, "role", f"{path}.role")
        content = message.get("content")
        if isinstance(content, dict):  # a single part is accepted as well as an array
            content = [content]
        text, n = content_text(content, f"{path}.content")
        images += n
        plan = message.get("tool_plan")
        calls = opt_list(message, "tool_calls", f"{path}.tool_calls")
        text += (plan if isinstance(plan, str) else "") + "".join(compact_json(c) for c in calls)
        messages.append(PromptMessage(role=role, text=text))
    extra = [compact_json(d) for d in opt_list(body, "documents")]
    extra += [compact_json(t) for t in opt_list(body, "tools")]
    return ParsedRequest(
        model=req_model(body),
        stream=opt_bool(body, "stream"),
        max_output_tokens=first_int(body, "max_tokens"),
        messages=tuple(messages),
        extra_text=tuple(extra),
        image_count=images,
    )


def _parse_embed(body: Mapping[str, Any], version: str) -> ParsedRequest:
    texts: list[str] = []
    for i, text in enumerate(opt_list(body, "texts")):
        if not isinstance(text, str):
            raise wrong(f"texts[{i}]", "a string", text)
        texts.append(text)
    images = len(opt_list(body, "images"))
    for i, item in enumerate(opt_list(body, "inputs")):
        content = obj(item, f"inputs[{i}]").get("content")
        text, n = content_text(content, f"inputs[{i}].content")
        texts.append(text)
        images += n
    model = req_model(body) if version == "v2" else opt_model(body)
    return ParsedRequest(
        model=model,
        stream=False,
        max_output_tokens=0,
        extra_text=tuple(texts),
        image_count=images,
    )


def _parse_rerank(body: Mapping[str, Any], version: str) -> ParsedRequest:
    req_str(body, "query")
    documents = req_list(body, "documents")
    model = req_model(body) if version == "v2" else opt_model(body)
    units = max(1, -(-len(documents) // DOCUMENTS_PER_SEARCH_UNIT))
    return ParsedRequest(
        model=model,
        stream=False,
        max_output_tokens=0,
        quantity=float(units),
        quantity_estimated=True,
    )


def rerank_usage(obj: Any) -> Usage | None:
    """``meta.billed_units.search_units`` of a rerank answer (transcribed from Cohere's
    API reference: ``{"results": [...], "meta": {"billed_units": {"search_units": 1}}}``)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("results"), list):
        return None
    meta = obj.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    units = _count(billed.get("search_units")) if isinstance(billed, dict) else None
    return Usage(unit="search_units", quantity=None if units is None else float(units))


class RerankParser:
    """A rerank JSON answer, buffered (it is small: scores and indexes)."""

    __slots__ = ("_chunks", "_meta")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._meta: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def feed_window(self, head: bytes, tail: bytes) -> None:
        # A rerank answer larger than the capture (thousands of results): its billed
        # units are the last member, read from the tail.
        self._chunks = []
        self._meta = _meta_in(tail)

    def finish(self) -> Usage | None:
        if self._meta is not None:
            return rerank_usage({"results": [], "meta": self._meta})
        try:
            obj = json.loads(b"".join(self._chunks))
        except (ValueError, RecursionError):
            return None
        return rerank_usage(obj)


def _meta_in(tail: bytes) -> dict[str, Any] | None:
    """The ``"meta"`` object at the end of a rerank answer's tail, or None."""
    value = last_member_value(tail.decode("utf-8", "replace"), "meta")
    return value if isinstance(value, dict) else None


class CohereProvider:
    """api.cohere.com; ``Route.api_version`` says v1 or v2."""

    name = "cohere"

    def match(self, method: str, path: str) -> Route | None:
        found = _ROUTES.get(path.partition("?")[0].rstrip("/").lower())
        if method != "POST" or found is None:
            return None
        return Route(self.name, found[0], api_version=found[1])

    def parse_request(self, route: Route, body: Mapping[str, Any]) -> ParsedRequest:
        if route.operation == "embed":
            return _parse_embed(body, route.api_version or "v2")
        if route.operation == "rerank":
            return _parse_rerank(body, route.api_version or "v2")
        return _parse_v1_chat(body) if route.api_version == "v1" else _parse_v2_chat(body)

    def usage_parser(
        self, route: Route, *, streaming: bool, content_encoding: str | None = None
    ) -> UsageParser:
        parser: UsageParser
        if route.operation == "rerank":
            parser = RerankParser()
        elif not streaming:
            parser = JSONBodyParser(extract, std_usage, ("meta", "usage"))
        elif route.api_version == "v1":
            parser = NDJSONUsageParser(extract, std_usage, ('"stream-end"',))
        else:
            parser = SSEUsageParser(extract, std_usage, ('"message-end"',), merge=False)
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
        # Cohere errors are a bare {"message": ...}; details sit beside it.
        body = {"message": message, "details": dict(details)}
        return json.dumps(body, separators=(",", ":")).encode()

    def request_patch(self, route: Route, body: Mapping[str, Any]) -> dict[str, Any] | None:
        return None
