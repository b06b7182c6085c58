"""Model deployments: the models the platform team provisions, and their prices."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Safe in a path segment and a query value: what Azure allows in a deployment name.
AZURE_DEPLOYMENT: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# "2024-10-21", "2025-04-01-preview", "preview", "latest".
API_VERSION: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,39}$")


def azure_problems(
    provider: str | None, azure_deployment: str | None, api_version: str | None
) -> list[tuple[str, str]]:
    """``(field, problem)`` of a deployment's Azure fields (the same rules as the CHECK
    constraints of 0007_azure_deployments.sql); ``provider`` None: not known here."""
    problems = []
    if azure_deployment is not None and not AZURE_DEPLOYMENT.match(azure_deployment):
        problems.append(("azure_deployment", "letters, digits, '.', '_' and '-' only, at most 64"))
    if api_version is not None and not API_VERSION.match(api_version):
        problems.append(("api_version", "letters, digits, '.' and '-' only, e.g. 2024-10-21"))
    for name, value in (("azure_deployment", azure_deployment), ("api_version", api_version)):
        if value is not None and provider is not None and provider != "azure":
            problems.append((name, f"only an azure deployment has one, not {provider}"))
    return problems


@dataclass(frozen=True, slots=True)
class ModelDeployment:
    name: str
    provider: str
    upstream_model: str
    # The Envoy cluster the request is routed to (via the routing header); None: default.
    route: str | None = None
    context_window: int | None = None
    # USD per million tokens. None: unpriced (unknown, not free: the request is refused
    # or allowed and reported, by the ``unpriced`` rule); 0: free. The loaders (the
    # standalone file, Postgres) give None for a price never set; 0.0 here is only the
    # constructor's convenience.
    input_price_per_mtok: float | None = 0.0
    cached_input_price_per_mtok: float | None = 0.0
    output_price_per_mtok: float | None = 0.0
    enabled: bool = True
    # The provider account serving the model (its name); `route` is then its cluster.
    account: str | None = None
    # Routes billed by another unit than tokens (``providers.units``): USD per image,
    # per character, per second of audio or per search unit. None: unpriced.
    unit_price_usd: float | None = None
    # Images by size and quality (``"1024x1024/hd"``), USD per image; a key found here
    # wins over ``unit_price_usd``.
    image_prices: tuple[tuple[str, float], ...] = ()
    # Anthropic cache writes, USD per million tokens (5-minute and 1-hour lifetimes);
    # None: the input price (a premium never set is not made free, nor invented).
    cache_write_5m_price_per_mtok: float | None = None
    cache_write_1h_price_per_mtok: float | None = None
    # A higher tier above a prompt size (Gemini's >200k prompts): when the prompt has
    # more than ``long_context_threshold_tokens`` tokens the whole request is priced at
    # these (a None one: the base price).
    long_context_threshold_tokens: int | None = None
    long_context_input_price_per_mtok: float | None = None
    long_context_cached_input_price_per_mtok: float | None = None
    long_context_output_price_per_mtok: float | None = None
    # The price book version these prices are (Postgres); None: not versioned (the
    # standalone file). Stamped on every usage row priced with them.
    price_version: int | None = None
    # Azure OpenAI only: the deployment's name at Azure (default: upstream_model) and
    # the ``api-version`` its deployment path is called with. With an api_version, a
    # request goes to ``/openai/deployments/{name}/...?api-version=...``; without, to
    # the ``/openai/v1/`` paths with the name as the body's ``model``.
    azure_deployment: str | None = None
    api_version: str | None = None
