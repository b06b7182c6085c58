"""Cost from deployment prices, and which deployment prices a record."""

from __future__ import annotations

from dataclasses import replace

import pytest

from policy_sidecar.catalog import ModelDeployment
from policy_sidecar.usage import CostCalculator, Pricing

from .helpers import rec

CALC = CostCalculator(input_per_mtok=2.5, cached_input_per_mtok=1.25, output_per_mtok=10.0)


@pytest.mark.parametrize(
    ("prompt", "cached", "completion", "expected"),
    [
        (0, 0, 0, 0.0),
        (1_000_000, 0, 0, 2.5),
        (0, 0, 1_000_000, 10.0),
        (1_000_000, 1_000_000, 0, 1.25),
        (1000, 400, 200, (600 * 2.5 + 400 * 1.25 + 200 * 10.0) / 1e6),
        (100, 500, 0, 100 * 1.25 / 1e6),  # cached clamped to the prompt
        (-5, -1, -3, 0.0),  # nonsense counts never make a negative cost
    ],
)
def test_cost_formula(prompt: int, cached: int, completion: int, expected: float) -> None:
    got = CALC.cost(prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion)
    assert got == pytest.approx(expected, rel=1e-12, abs=0.0)


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
        ("unknown", None, None),
    ],
)
def test_pricing_lookup(requested: str | None, served: str | None, expected: float | None) -> None:
    record = replace(
        rec(0),
        requested_model=requested,
        served_model=served,
        prompt_tokens=1_000_000,
        completion_tokens=0,
    )
    assert Pricing(MODELS).apply(record).cost_usd == expected


def test_upstream_name_shared_by_differently_priced_deployments_is_unknown() -> None:
    record = replace(rec(0), requested_model=None, served_model="gpt-4o-x")
    models = {"a": replace(MODELS["gpt-4o"], upstream_model="gpt-4o-x"),
              "b": replace(MODELS["gpt-4o-b"], upstream_model="gpt-4o-x")}  # fmt: skip
    assert Pricing(models).apply(record).cost_usd is None


def test_existing_cost_is_kept() -> None:
    record = replace(rec(0), cost_usd=9.0)
    assert Pricing(MODELS).apply(record) is record
