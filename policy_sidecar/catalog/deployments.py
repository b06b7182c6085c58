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
    # The price book version these prices are (Postgres); None: not versioned (the
    # standalone file). Stamped on every usage row priced with them.
    price_version: int | None = None
