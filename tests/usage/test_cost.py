"""Records priced by `Pricing` (the recorder's fallback) over the live price book."""

from __future__ import annotations

from dataclasses import replace

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import cost_usd
from policy_sidecar.providers.base import Usage
from policy_sidecar.usage.cost import Pricing

from .helpers import rec

MODEL = ModelDeployment(
    "gpt-4o-mini", "openai", "gpt-4o-mini", input_price_per_mtok=1.0, output_price_per_mtok=2.0
)


def test_record_is_priced_by_the_one_formula() -> None:
    record = replace(rec(0), requested_model="gpt-4o-mini", cached_tokens=30)
    want = cost_usd(
        Usage(record.prompt_tokens, record.completion_tokens, record.total_tokens, 30), MODEL
    )
    assert Pricing({"gpt-4o-mini": MODEL}).apply(record).cost_usd == want


def test_unknown_model_keeps_no_cost() -> None:
    record = replace(rec(0), requested_model="nope", served_model=None)
    assert Pricing({"gpt-4o-mini": MODEL}).apply(record).cost_usd is None


def test_pricing_follows_the_catalogue_it_was_given() -> None:
    models: dict[str, ModelDeployment] = {}
    pricing = Pricing(models)
    record = replace(rec(0), requested_model="gpt-4o-mini")
    assert pricing.apply(record).cost_usd is None
    models["gpt-4o-mini"] = MODEL  # created after start-up
    assert pricing.apply(record).cost_usd is not None


def test_existing_cost_is_kept() -> None:
    record = replace(rec(0), cost_usd=9.0)
    assert Pricing({"gpt-4o-mini": MODEL}).apply(record) is record
