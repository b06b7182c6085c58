"""Providers: one module per LLM API, behind one interface, picked by a registry."""

from __future__ import annotations

from policy_sidecar.providers._body import (
    MAX_NESTING_DEPTH,
    load_body,
    load_request,
    patched_body,
)
from policy_sidecar.providers._fields import MAX_MODEL_CHARS, MAX_TOKEN_COUNT
from policy_sidecar.providers.base import (
    ParsedRequest,
    PromptMessage,
    Provider,
    RequestError,
    Route,
    Usage,
    UsageParser,
    is_streaming_response,
)
from policy_sidecar.providers.registry import ProviderRegistry, default_registry

__all__ = [
    "MAX_MODEL_CHARS",
    "MAX_NESTING_DEPTH",
    "MAX_TOKEN_COUNT",
    "ParsedRequest",
    "PromptMessage",
    "Provider",
    "ProviderRegistry",
    "RequestError",
    "Route",
    "Usage",
    "UsageParser",
    "default_registry",
    "is_streaming_response",
    "load_body",
    "load_request",
    "patched_body",
]
