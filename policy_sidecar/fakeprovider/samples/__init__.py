"""Realistic provider response bodies for the fake upstream and for tests.

Pure functions: a route, the request body and the usage to report in, body bytes out.
Every body parses back to the same usage with the provider's own usage parser (tested),
and follows the provider's public API reference (see tests/fixtures for the originals).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_sidecar.fakeprovider.samples import _openai, _others
from policy_sidecar.fakeprovider.samples._common import DEFAULT_TEXT, SampleResponse
from policy_sidecar.providers.base import Route, Usage

__all__ = ["DEFAULT_TEXT", "SampleResponse", "build_response"]


def build_response(
    route: Route,
    request: Mapping[str, Any],
    usage: Usage,
    *,
    stream: bool | None = None,
    text: str = DEFAULT_TEXT,
    gemini_sse: bool = True,
) -> SampleResponse:
    """The body ``route``'s provider would answer ``request`` with, reporting ``usage``.

    ``stream`` defaults to the request's own flag (the path's, for Gemini). Embeddings
    never stream. OpenAI-style streams carry a usage chunk only when the request asked
    for it (``stream_options.include_usage``), as the real API does. ``gemini_sse``
    picks ``alt=sse`` framing over the JSON-array stream.
    """
    if stream is None:
        stream = route.stream_from_path or request.get("stream") is True
    provider, op = route.provider, route.operation
    if provider in ("openai", "azure"):
        azure = provider == "azure"
        if op == "chat":
            return _openai.chat(request, usage, text, stream=stream, azure=azure)
        if op == "completions":
            return _openai.completion(request, usage, text, stream=stream)
        if op == "embeddings":
            return _openai.embeddings(request, usage)
        if op == "responses":
            return _openai.responses(request, usage, text, stream=stream)
    elif provider == "anthropic" and op == "messages":
        return _others.anthropic(request, usage, text, stream=stream)
    elif provider == "cohere":
        version = route.api_version or "v2"
        if op == "embed":
            return _others.cohere_embed(request, usage, version=version)
        return _others.cohere_chat(request, usage, text, stream=stream, version=version)
    elif provider == "gemini":
        model = route.model_from_path or "gemini-2.5-flash"
        return _others.gemini(model, usage, text, stream=stream, sse_framing=gemini_sse)
    raise ValueError(f"no sample for provider {provider!r} operation {op!r}")
