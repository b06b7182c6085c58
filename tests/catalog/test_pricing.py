"""The one cost formula and the live price book (policy_sidecar/catalog/pricing.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from policy_sidecar.admin.policy_check import priced
from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import CatalogPriceBook, cost_usd, missing_prices
from policy_sidecar.policy.context import PostRequestContext, PreRequestContext
from policy_sidecar.policy.limits import TokenLimitPolicy, cost_micro_usd
from policy_sidecar.providers.base import Usage

PRICED = ModelDeployment(
    "m",
    "openai",
    "gpt-4o",
    input_price_per_mtok=2.5,
    cached_input_price_per_mtok=1.25,
    output_price_per_mtok=10.0,
)
NO_CACHED_PRICE = replace(PRICED, cached_input_price_per_mtok=0.0)


def usage(prompt: int = 0, completion: int = 0, cached: int = 0, reasoning: int = 0) -> Usage:
    return Usage(prompt, completion, prompt + completion, cached, reasoning)


@pytest.mark.parametrize(
    ("deployment", "u", "expected"),
    [
        (PRICED, usage(), 0.0),
        (PRICED, usage(prompt=1_000_000), 2.5),
        (PRICED, usage(completion=1_000_000), 10.0),
        # Cached tokens are part of the prompt, priced at the cached price...
        (PRICED, usage(prompt=1_000_000, cached=1_000_000), 1.25),
        (PRICED, usage(1000, 200, cached=400), (600 * 2.5 + 400 * 1.25 + 200 * 10.0) / 1e6),
        # ...clamped to the prompt...
        (PRICED, usage(prompt=100, cached=500), 100 * 1.25 / 1e6),
        # ...and at the input price when the deployment has no cached price.
        (NO_CACHED_PRICE, usage(prompt=1000, cached=400), 1000 * 2.5 / 1e6),
        # Reasoning tokens are inside the completion count: priced once, as output.
        (PRICED, usage(completion=300, reasoning=200), 300 * 10.0 / 1e6),
        # Nonsense counts never make a negative cost.
        (PRICED, Usage(-5, -3, -8, -1, -1), 0.0),
    ],
)
def test_cost_formula(deployment: ModelDeployment, u: Usage, expected: float) -> None:
    assert cost_usd(u, deployment) == pytest.approx(expected, rel=1e-12, abs=0.0)


@pytest.mark.parametrize(
    "u",
    [usage(1000, 200, cached=400), usage(prompt=100, cached=500), usage(7, 3, reasoning=2)],
)
@pytest.mark.parametrize("deployment", [PRICED, NO_CACHED_PRICE])
def test_cost_budgets_use_the_same_formula(deployment: ModelDeployment, u: Usage) -> None:
    micro = cost_micro_usd(u, deployment)
    assert micro == TokenLimitPolicy.actual_for("cost_usd", u, deployment)
    assert micro / 1e6 == pytest.approx(cost_usd(u, deployment), abs=1e-6)
    assert micro >= cost_usd(u, deployment) * 1e6 - 1e-6  # rounded up, never down


def test_float_noise_does_not_round_a_micro_dollar_up() -> None:
    cheap = ModelDeployment("c", "openai", "c", input_price_per_mtok=0.15)
    assert cost_micro_usd(usage(prompt=10_000), cheap) == 1500  # not 1501
    assert cost_micro_usd(usage(prompt=1), cheap) == 1  # 0.15 micro-dollars: rounded up


MODELS = {
    "fast": ModelDeployment("fast", "openai", "gpt-4o-mini", input_price_per_mtok=1.0),
    "gpt-4o": ModelDeployment("gpt-4o", "openai", "gpt-4o", input_price_per_mtok=2.0),
    "gpt-4o-b": ModelDeployment("gpt-4o-b", "azure", "gpt-4o", input_price_per_mtok=3.0),
}


@pytest.mark.parametrize(
    ("requested", "served", "expected"),
    [
        ("fast", "gpt-4o-mini-2024-07-18", 1.0),  # the requested deployment wins
        ("gpt-4o", "gpt-4o", 2.0),
        (None, "fast", 1.0),  # served name that is a deployment name
        (None, "gpt-4o-mini", 1.0),  # served upstream model, one deployment has it
        (None, "gpt-4o-2024", None),  # unknown
        ("unknown", None, None),  # missing price: None (unknown), not 0.0
        (None, None, None),
    ],
)
def test_price_book_lookup(requested: str | None, served: str | None, expected: float) -> None:
    assert CatalogPriceBook(MODELS).cost(usage(1_000_000), requested, served) == expected


def test_upstream_name_shared_by_differently_priced_deployments_is_unknown() -> None:
    models = {"a": replace(MODELS["gpt-4o"], upstream_model="gpt-4o-x"),
              "b": replace(MODELS["gpt-4o-b"], upstream_model="gpt-4o-x")}  # fmt: skip
    assert CatalogPriceBook(models).cost(usage(1_000_000), None, "gpt-4o-x") is None


def test_price_book_reads_the_live_catalogue() -> None:
    models: dict[str, ModelDeployment] = {}
    book = CatalogPriceBook(models)
    assert book.cost(usage(1_000_000), "late") is None
    models["late"] = ModelDeployment("late", "openai", "late", input_price_per_mtok=4.0)
    assert book.cost(usage(1_000_000), "late") == 4.0  # created after the book was
    models["late"] = replace(models["late"], input_price_per_mtok=5.0)
    assert book.cost(usage(1_000_000), "late") == 5.0  # a price change, next request


PRE = PreRequestContext(
    request_size_bytes=10,
    estimated_tokens=1000,
    model="m",
    org_id="o",
    app_id="a",
    environment="dev",
    provider="openai",
    stream=False,
    max_tokens=None,
)


def test_dry_run_prices_the_sample_with_the_same_formula() -> None:
    post = PostRequestContext(
        pre=PRE,
        prompt_tokens=1000,
        completion_tokens=200,
        total_tokens=1200,
        cached_tokens=400,
        reasoning_tokens=0,
        latency_ms=5,
        response_size_bytes=100,
        status_code=200,
        cost_usd=None,
    )
    assert priced(post, PRICED).cost_usd == cost_usd(usage(1000, 200, cached=400), PRICED)
    assert priced(post, None).cost_usd is None


UNPRICED = ModelDeployment(
    "u", "openai", "gpt-x", input_price_per_mtok=None, output_price_per_mtok=None
)
FREE = ModelDeployment("f", "openai", "gpt-x", input_price_per_mtok=0.0, output_price_per_mtok=0.0)


def test_an_unpriced_deployment_has_no_cost_not_a_zero_one() -> None:
    u = usage(1000, 200)
    assert cost_usd(u, UNPRICED) is None
    assert cost_usd(u, replace(PRICED, output_price_per_mtok=None)) is None
    assert CatalogPriceBook({"u": UNPRICED}).cost(u, "u") is None
    # A cost budget is not consumed by an unpriced model (allowed only when reported).
    assert cost_micro_usd(u, UNPRICED) == 0


def test_zero_is_free_and_priced() -> None:
    assert cost_usd(usage(1000, 200), FREE) == 0.0


@pytest.mark.parametrize(
    ("deployment", "unit", "missing"),
    [
        (PRICED, "tokens", ()),
        (FREE, "tokens", ()),
        (UNPRICED, "tokens", ("input_price_per_mtok", "output_price_per_mtok")),
        (replace(PRICED, input_price_per_mtok=None), "tokens", ("input_price_per_mtok",)),
        # A missing cached price falls back to the input price: not missing.
        (replace(PRICED, cached_input_price_per_mtok=None), "tokens", ()),
        (PRICED, None, ()),
        (PRICED, "images", ("image_prices or unit_price_usd (USD per image)",)),
        (PRICED, "seconds", ("unit_price_usd (USD per second)",)),
        (PRICED, "requests", ()),
    ],
)
def test_missing_prices_name_what_the_route_needs(
    deployment: ModelDeployment, unit: str | None, missing: tuple[str, ...]
) -> None:
    assert missing_prices(deployment, unit) == missing


def test_a_missing_cached_price_falls_back_to_the_input_price() -> None:
    d = replace(PRICED, cached_input_price_per_mtok=None)
    assert cost_usd(usage(prompt=1000, cached=400), d) == pytest.approx(1000 * 2.5 / 1e6)
