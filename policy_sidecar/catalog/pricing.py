"""What a request cost, from the live model catalogue. Pure; no I/O.

One formula (`cost_usd`) and one lookup (`PriceBook`), shared by cost budgets
(`policy/limits.py`), usage records (`usage/cost.py`, the ext_proc streams) and the
admin dry-run, so a budget and a usage report can never disagree on a price.

The formula for tokens, prices in USD per million tokens as on `ModelDeployment`::

    cost = (prompt - cached - writes) * input + cached * cached_input
           + write_5m * cache_write_5m + write_1h * cache_write_1h + completion * output

with the long-context prices instead when the prompt is above the deployment's
threshold (Gemini's >200k tier). Other units (``usage.unit``): ``quantity * price``,
the price of the image's size and quality or ``unit_price_usd``; ``requests`` (the
free routes: moderation, token counting) cost 0.

- Cached tokens are part of the prompt (the convention every usage parser normalises
  to), so they are clamped to ``[0, prompt]``; a provider reporting more cached than
  prompt tokens is never billed a negative amount.
- Cached tokens are priced at the deployment's cached-input price when it has one
  (a price above 0), else at the ordinary input price: a deployment whose cached
  price was never set is not made free for cached prompts.
- Reasoning tokens are already part of the completion tokens (OpenAI's convention;
  the Gemini parser adds ``thoughtsTokenCount`` in): they are priced as output once,
  never added a second time.
- Cache writes (Anthropic's 5-minute and 1-hour) are part of the prompt, clamped to
  what the prompt leaves after the cached reads, and priced at their premiums (a
  premium never set: the input price).
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


def missing_prices(
    deployment: ModelDeployment, unit: str | None = "tokens", price_key: str | None = None
) -> tuple[str, ...]:
    """The names of the prices ``unit`` is billed by that ``deployment`` lacks (None).

    Tokens need the input and output prices; images the price of their size and
    quality (``image_prices``) or ``unit_price_usd``; characters, seconds and search
    units ``unit_price_usd``; ``requests`` (the free routes) nothing.
    """
    if unit == "requests":
        return ()
    if unit == "images":
        if price_key is not None and price_key in dict(deployment.image_prices):
            return ()
        if deployment.unit_price_usd is not None:
            return ()
        shown = f"image_prices['{price_key}']" if price_key else "image_prices"
        return (f"{shown} or unit_price_usd (USD per image)",)
    if unit not in (None, "tokens"):
        if deployment.unit_price_usd is None:
            return (f"unit_price_usd (USD per {_SINGULAR.get(unit, unit)})",)
        return ()
    return tuple(
        name
        for name in ("input_price_per_mtok", "output_price_per_mtok")
        if getattr(deployment, name) is None
    )


_SINGULAR = {"characters": "character", "seconds": "second", "search_units": "search unit"}


def cost_usd(usage: Usage, deployment: ModelDeployment) -> float | None:
    """The cost of ``usage`` at ``deployment``'s prices (see the module docstring);
    None when the deployment is unpriced for the usage's unit."""
    unit = usage.unit or "tokens"
    if unit == "requests":
        return 0.0
    if unit != "tokens":
        return _unit_cost(usage, deployment)
    input_price = deployment.input_price_per_mtok
    output_price = deployment.output_price_per_mtok
    if input_price is None or output_price is None:
        return None
    prompt = max(usage.prompt_tokens, 0)
    cached_price = deployment.cached_input_price_per_mtok or input_price
    threshold = deployment.long_context_threshold_tokens
    if threshold is not None and prompt > threshold:
        input_price = _or(deployment.long_context_input_price_per_mtok, input_price)
        output_price = _or(deployment.long_context_output_price_per_mtok, output_price)
        cached_price = _or(deployment.long_context_cached_input_price_per_mtok, cached_price)
    cached = min(max(usage.cached_tokens, 0), prompt)
    # Cache writes are part of the prompt too, beside the cached reads.
    write_5m = min(max(usage.cache_write_5m_tokens, 0), prompt - cached)
    write_1h = min(max(usage.cache_write_1h_tokens, 0), prompt - cached - write_5m)
    plain = prompt - cached - write_5m - write_1h
    completion = max(usage.completion_tokens, 0)
    return (
        plain * input_price
        + cached * cached_price
        + write_5m * _or(deployment.cache_write_5m_price_per_mtok, input_price)
        + write_1h * _or(deployment.cache_write_1h_price_per_mtok, input_price)
        + completion * output_price
    ) / _PER_MILLION


def _or(price: float | None, fallback: float) -> float:
    return fallback if price is None else price


def _unit_cost(usage: Usage, deployment: ModelDeployment) -> float | None:
    """Images, characters, seconds, search units: quantity * the unit's price."""
    price = deployment.unit_price_usd
    if usage.unit == "images" and usage.price_key is not None:
        price = dict(deployment.image_prices).get(usage.price_key, price)
    if price is None:
        return None
    return max(usage.quantity or 0.0, 0.0) * price


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


def _prices(m: ModelDeployment) -> tuple[object, ...]:
    return (
        m.input_price_per_mtok,
        m.cached_input_price_per_mtok,
        m.output_price_per_mtok,
        m.unit_price_usd,
        m.image_prices,
        m.cache_write_5m_price_per_mtok,
        m.cache_write_1h_price_per_mtok,
        m.long_context_threshold_tokens,
        m.long_context_input_price_per_mtok,
        m.long_context_cached_input_price_per_mtok,
        m.long_context_output_price_per_mtok,
    )
