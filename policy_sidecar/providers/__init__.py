"""Providers: one module per LLM API, behind one interface, picked by a registry."""

from __future__ import annotations

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
]
