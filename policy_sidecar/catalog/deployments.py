"""Model deployments: the models the platform team provisions, and their prices."""

from __future__ import annotations

from dataclasses import dataclass


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
