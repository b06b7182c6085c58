"""Picks the provider for a request from its method and path.

Adding a provider: write its module (one class implementing ``Provider``) and add the
class to ``PROVIDERS`` below; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from policy_sidecar.providers.anthropic import AnthropicProvider
from policy_sidecar.providers.azure import AzureOpenAIProvider
from policy_sidecar.providers.base import Provider, Route
from policy_sidecar.providers.cohere import CohereProvider
from policy_sidecar.providers.gemini import GeminiProvider
from policy_sidecar.providers.openai import OpenAIProvider
from policy_sidecar.providers.paths import canonical_target

# The one list of providers. Paths do not overlap, so order only matters for speed.
PROVIDERS: tuple[type[Provider], ...] = (
    OpenAIProvider,
    AzureOpenAIProvider,
    AnthropicProvider,
    GeminiProvider,
    CohereProvider,
)


class ProviderRegistry:
    """Asks each provider in turn; the first match wins. Immutable, safe to share.

    ``match`` returns None for an unknown method/path: what happens then (pass through
    unmetered, or deny) is the caller's configured rule, not the registry's.
    """

    def __init__(self, providers: Sequence[Provider]) -> None:
        self._providers = tuple(providers)
        self._by_name = {p.name: p for p in self._providers}

    def match(self, method: str, path: str) -> tuple[Provider, Route] | None:
        """Matches the canonical spelling of ``path`` (see ``paths``), so percent-escapes,
        ``;`` parameters, trailing slashes and case never decide whether it is metered."""
        target = canonical_target(path)
        for provider in self._providers:
            route = provider.match(method, target)
            if route is not None:
                return provider, route
        return None

    def get(self, name: str) -> Provider:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)


def default_registry() -> ProviderRegistry:
    return ProviderRegistry([cls() for cls in PROVIDERS])
