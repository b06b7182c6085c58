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
    input_price_per_mtok: float = 0.0
    cached_input_price_per_mtok: float = 0.0
    output_price_per_mtok: float = 0.0
    enabled: bool = True
    # The provider account serving the model (its name); `route` is then its cluster.
    account: str | None = None
