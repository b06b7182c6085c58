"""Picks the provider for a request from its method and path."""

from __future__ import annotations

from collections.abc import Sequence

from policy_sidecar.providers.base import Provider, Route
from policy_sidecar.providers.openai import OpenAIProvider


class ProviderRegistry:
    """Asks each provider in turn; the first match wins."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self._providers = tuple(providers)
        self._by_name = {p.name: p for p in self._providers}

    def match(self, method: str, path: str) -> tuple[Provider, Route] | None:
        for provider in self._providers:
            route = provider.match(method, path)
            if route is not None:
                return provider, route
        return None

    def get(self, name: str) -> Provider:
        return self._by_name[name]


def default_registry() -> ProviderRegistry:
    return ProviderRegistry([OpenAIProvider()])
