"""What a request cost, from the live model catalogue. Pure; no I/O.

One formula (`cost_usd`) and one lookup (`PriceBook`), shared by cost budgets
(`policy/limits.py`), usage records (`usage/cost.py`, the ext_proc streams) and the
admin dry-run, so a budget and a usage report can never disagree on a price.

The formula, prices in USD per million tokens as on `ModelDeployment`::

    cost = (prompt - cached) * input + cached * cached_input + completion * output

- Cached tokens are part of the prompt (the convention every usage parser normalises
  to), so they are clamped to ``[0, prompt]``; a provider reporting more cached than
  prompt tokens is never billed a negative amount.
- Cached tokens are priced at the deployment's cached-input price when it has one
  (a price above 0), else at the ordinary input price: a deployment whose cached
  price was never set is not made free for cached prompts.
- Reasoning tokens are already part of the completion tokens (OpenAI's convention;
  the Gemini parser adds ``thoughtsTokenCount`` in): they are priced as output once,
  never added a second time.
- Negative counts count as 0.
- A price is nullable: None is *unpriced* (unknown), 0 is free. A token route needs the
  input and output prices (`missing_prices`); without one the cost is None, never 0,
  and the request is refused or allowed and reported by the ``unpriced`` rule
  (docs/providers.md, "Unpriced models"). A missing cached-input price falls back to
  the input price, as a 0 one does (a cached price never set must not make cached
  prompts free).

Prices are read from the catalogue on every call (a dict lookup: the catalogue is
cached in process and refreshed on change), so a price change applies from the next
request and a model created after start-up is priced at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.providers.base import Usage

__all__ = ["CatalogPriceBook", "PriceBook", "cost_usd", "missing_prices"]

_PER_MILLION = 1_000_000.0


def missing_prices(deployment: ModelDeployment, unit: str | None = "tokens") -> tuple[str, ...]:
    """The names of the prices ``unit`` is billed by that ``deployment`` lacks (None).

    Every metered route bills tokens today (``providers.units``); a route of another
    unit whose price the catalogue cannot hold yet is unpriced as a whole.
    """
    if unit not in (None, "tokens"):
        return (f"price per {unit}",)
    return tuple(
        name
        for name in ("input_price_per_mtok", "output_price_per_mtok")
        if getattr(deployment, name) is None
    )


def cost_usd(usage: Usage, deployment: ModelDeployment) -> float | None:
    """The cost of ``usage`` at ``deployment``'s prices (see the module docstring);
    None when the deployment is unpriced."""
    input_price = deployment.input_price_per_mtok
    output_price = deployment.output_price_per_mtok
    if input_price is None or output_price is None:
        return None
    prompt = max(usage.prompt_tokens, 0)
    cached = min(max(usage.cached_tokens, 0), prompt)
    completion = max(usage.completion_tokens, 0)
    cached_price = deployment.cached_input_price_per_mtok or input_price
    return (
        (prompt - cached) * input_price + cached * cached_price + completion * output_price
    ) / _PER_MILLION


class PriceBook(Protocol):
    """Prices requests. Safe to share between concurrent requests; reads live prices."""

    def deployment(
        self, requested_model: str | None, served_model: str | None = None
    ) -> ModelDeployment | None:
        """The deployment whose prices apply, or None when the model is unknown."""
        ...

    def cost(
        self, usage: Usage, requested_model: str | None, served_model: str | None = None
    ) -> float | None:
        """The cost in USD, or None when no price is known (unknown, not free)."""
        ...


class CatalogPriceBook:
    """A `PriceBook` over a model catalogue mapping (the live `ModelCatalog` in
    production, the configuration's models in standalone mode).

    Lookup order: the requested model (the deployment name callers use, which is what
    the platform team priced), then the served model by deployment name, then the
    served model by upstream model name when every deployment serving it has the same
    prices.
    """

    __slots__ = ("_models",)

    def __init__(self, models: Mapping[str, ModelDeployment]) -> None:
        self._models = models

    def deployment(
        self, requested_model: str | None, served_model: str | None = None
    ) -> ModelDeployment | None:
        for name in (requested_model, served_model):
            if name:
                found = self._models.get(name)
                if found is not None:
                    return found
        if not served_model:
            return None
        # Rare (the served name is an upstream name no deployment is called by): a scan.
        serving = [m for m in self._models.values() if m.upstream_model == served_model]
        if serving and len({_prices(m) for m in serving}) == 1:
            return serving[0]
        return None

    def cost(
        self, usage: Usage, requested_model: str | None, served_model: str | None = None
    ) -> float | None:
        deployment = self.deployment(requested_model, served_model)
        return None if deployment is None else cost_usd(usage, deployment)


def _prices(m: ModelDeployment) -> tuple[float | None, float | None, float | None]:
    return (m.input_price_per_mtok, m.cached_input_price_per_mtok, m.output_price_per_mtok)
