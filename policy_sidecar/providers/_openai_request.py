"""OpenAI-shaped request bodies (shared by OpenAI and Azure OpenAI)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_sidecar.providers._fields import (
    compact_json,
    first_int,
    is_int,
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
from policy_sidecar.providers.base import ParsedRequest, PromptMessage, RequestError

_IMAGE_PARTS = frozenset({"image_url", "input_image"})
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def content_text(content: Any, path: str) -> tuple[str, int]:
    """Text and image count of a chat/responses ``content`` (string or array of parts)."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise wrong(path, "a string or an array", content)
    texts: list[str] = []
    images = 0
    for i, part in enumerate(content):
        where = f"{path}[{i}]"
        part = obj(part, where)
        kind = part.get("type")
        if not isinstance(kind, str):  # checked first: a list or object is unhashable
            raise wrong(f"{where}.type", "a string", kind)
        if kind in _TEXT_PARTS:
            texts.append(req_str(part, "text", f"{where}.text"))
        elif kind == "refusal":
            texts.append(opt_str(part, "refusal", f"{where}.refusal") or "")
        elif kind in _IMAGE_PARTS:
            images += 1
        # Audio and file parts are not estimated (documented in docs/providers.md).
    return "".join(texts), images


def _tool_calls(message: Mapping[str, Any], path: str) -> list[str]:
    out: list[str] = []
    for i, call in enumerate(opt_list(message, "tool_calls", f"{path}.tool_calls")):
        call = obj(call, f"{path}.tool_calls[{i}]")
        function = call.get("function")
        if isinstance(function, dict):
            out.append(str(function.get("name", "")) + str(function.get("arguments", "")))
    return out


def _model(body: Mapping[str, Any], deployment: str | None) -> str:
    # Azure deployment paths: the deployment decides what is served; a body model is ignored.
    if deployment is not None:
        opt_model(body)
        return deployment
    return req_model(body)


# OpenAI's documented bound on `n` (and `best_of`): choices generated per request.
MAX_CHOICES = 128


def _choices(body: Mapping[str, Any], *keys: str) -> int:
    """How many completions one request generates (`n`, `best_of`): each is billed."""
    most = 1
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if not is_int(value) or not 1 <= value <= MAX_CHOICES:
            raise RequestError(f"'{key}' must be an integer from 1 to {MAX_CHOICES}")
        most = max(most, int(value))
    return most


def _times(tokens: int | None, choices: int) -> int | None:
    """The output budget of the whole request: every choice may use ``max_tokens``."""
    return None if tokens is None else tokens * choices


def parse_chat(body: Mapping[str, Any], *, model_default: str | None = None) -> ParsedRequest:
    messages: list[PromptMessage] = []
    extra: list[str] = []
    images = 0
    for i, raw in enumerate(req_list(body, "messages")):
        path = f"messages[{i}]"
        message = obj(raw, path)
        role = req_str(message, "role", f"{path}.role")
        text, n = content_text(message.get("content"), f"{path}.content")
        images += n
        calls = _tool_calls(message, path)
        if calls:
            text = text + "".join(calls)
        name = opt_str(message, "name", f"{path}.name")
        messages.append(PromptMessage(role=role, text=text, name=name))
    for key in ("tools", "functions"):
        extra.extend(compact_json(tool) for tool in opt_list(body, key))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and "json_schema" in response_format:
        extra.append(compact_json(response_format["json_schema"]))
    return ParsedRequest(
        model=_model(body, model_default),
        stream=opt_bool(body, "stream"),
        max_output_tokens=_times(
            first_int(body, "max_completion_tokens", "max_tokens"), _choices(body, "n")
        ),
        messages=tuple(messages),
        extra_text=tuple(extra),
        image_count=images,
    )


def text_or_tokens(value: Any, path: str) -> tuple[list[str], int]:
    """A prompt/input: string, array of strings, array of token ids or of arrays of ids."""
    if isinstance(value, str):
        return [value], 0
    if not isinstance(value, list):
        raise wrong(path, "a string or an array", value)
    texts: list[str] = []
    tokens = 0
    for i, item in enumerate(value):
        if isinstance(item, str):
            texts.append(item)
        elif is_int(item):
            tokens += 1
        elif isinstance(item, list) and all(is_int(t) for t in item):
            tokens += len(item)
        else:
            raise wrong(f"{path}[{i}]", "a string, a token id or an array of token ids", item)
    return texts, tokens


def parse_completion(body: Mapping[str, Any], *, model_default: str | None = None) -> ParsedRequest:
    if "prompt" not in body:
        raise RequestError("'prompt' is required")
    texts, tokens = text_or_tokens(body["prompt"], "prompt")
    suffix = opt_str(body, "suffix")
    if suffix:
        texts.append(suffix)
    max_tokens = first_int(body, "max_tokens")
    return ParsedRequest(
        model=_model(body, model_default),
        stream=opt_bool(body, "stream"),
        # The API's default is 16 when max_tokens is absent.
        max_output_tokens=_times(
            16 if max_tokens is None else max_tokens, _choices(body, "n", "best_of")
        ),
        extra_text=tuple(texts),
        pretokenized_tokens=tokens,
    )


def parse_embedding(body: Mapping[str, Any], *, model_default: str | None = None) -> ParsedRequest:
    if "input" not in body:
        raise RequestError("'input' is required")
    texts, tokens = text_or_tokens(body["input"], "input")
    return ParsedRequest(
        model=_model(body, model_default),
        stream=False,
        max_output_tokens=0,
        extra_text=tuple(texts),
        pretokenized_tokens=tokens,
    )


def parse_responses(body: Mapping[str, Any], *, model_default: str | None = None) -> ParsedRequest:
    messages: list[PromptMessage] = []
    extra: list[str] = []
    images = 0
    instructions = opt_str(body, "instructions")
    if instructions:
        messages.append(PromptMessage(role="developer", text=instructions))
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        messages.append(PromptMessage(role="user", text=raw_input))
    elif isinstance(raw_input, list):
        for i, item in enumerate(raw_input):
            path = f"input[{i}]"
            item = obj(item, path)
            kind = item.get("type", "message")
            if kind == "message" or "role" in item:
                role = req_str(item, "role", f"{path}.role")
                text, n = content_text(item.get("content"), f"{path}.content")
                images += n
                messages.append(PromptMessage(role=role, text=text))
            elif kind == "function_call":
                extra.append(str(item.get("name", "")) + str(item.get("arguments", "")))
            elif kind == "function_call_output":
                output = item.get("output")
                extra.append(output if isinstance(output, str) else compact_json(output))
    elif raw_input is not None:
        raise wrong("input", "a string or an array", raw_input)
    extra.extend(compact_json(tool) for tool in opt_list(body, "tools"))
    return ParsedRequest(
        model=_model(body, model_default),
        stream=opt_bool(body, "stream"),
        max_output_tokens=first_int(body, "max_output_tokens"),
        messages=tuple(messages),
        extra_text=tuple(extra),
        image_count=images,
    )


def include_usage_patch(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """``stream_options.include_usage`` for a streaming chat/completions request lacking it."""
    if body.get("stream") is not True:
        return None
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return None
    merged = dict(options) if isinstance(options, dict) else {}
    merged["include_usage"] = True
    return {"stream_options": merged}
