"""Cache-write premiums, long-context tiers and per-unit prices, checked against hand
computations (prices as the providers publish them, USD per million tokens)."""

from __future__ import annotations

import pytest

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.catalog.pricing import cost_usd, missing_prices
from policy_sidecar.policy.limits import cost_micro_usd
from policy_sidecar.providers.base import Usage

# Claude Sonnet 4.5: input 3, cache read 0.30, 5-minute write 3.75, 1-hour write 6, output 15.
SONNET = ModelDeployment(
    "claude-sonnet-4-5",
    "anthropic",
    "claude-sonnet-4-5",
    input_price_per_mtok=3.0,
    cached_input_price_per_mtok=0.30,
    output_price_per_mtok=15.0,
    cache_write_5m_price_per_mtok=3.75,
    cache_write_1h_price_per_mtok=6.0,
)
# Gemini 2.5 Pro: up to 200k prompt tokens input 1.25 / cached 0.31 / output 10; above,
# input 2.50 / cached 0.625 / output 15.
GEMINI_PRO = ModelDeployment(
    "gemini-2.5-pro",
    "gemini",
    "gemini-2.5-pro",
    input_price_per_mtok=1.25,
    cached_input_price_per_mtok=0.31,
    output_price_per_mtok=10.0,
    long_context_threshold_tokens=200_000,
    long_context_input_price_per_mtok=2.50,
    long_context_cached_input_price_per_mtok=0.625,
    long_context_output_price_per_mtok=15.0,
)


def test_anthropic_cache_writes_are_priced_at_their_premiums() -> None:
    # 50 plain + 1,000 cache reads + 2,000 5-minute writes + 1,000 1-hour writes, 400 out:
    # 50·3 + 1000·0.30 + 2000·3.75 + 1000·6 + 400·15 = 150 + 300 + 7500 + 6000 + 6000
    usage = Usage(
        4050, 400, 4450, cached_tokens=1000, cache_write_5m_tokens=2000, cache_write_1h_tokens=1000
    )
    assert cost_usd(usage, SONNET) == pytest.approx(19_950 / 1e6)
    assert cost_micro_usd(usage, SONNET) == 19_950


def test_a_premium_never_set_is_the_input_price() -> None:
    plain = ModelDeployment(
        "m", "anthropic", "m", input_price_per_mtok=3.0, output_price_per_mtok=15.0
    )
    usage = Usage(3000, 0, 3000, cache_write_5m_tokens=2000, cache_write_1h_tokens=1000)
    assert cost_usd(usage, plain) == pytest.approx(3000 * 3.0 / 1e6)


def test_cache_writes_never_exceed_what_the_prompt_leaves() -> None:
    # 100 prompt tokens, 80 of them cache reads: at most 20 can be writes.
    usage = Usage(100, 0, 100, cached_tokens=80, cache_write_1h_tokens=500)
    assert cost_usd(usage, SONNET) == pytest.approx((80 * 0.30 + 20 * 6.0) / 1e6)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # Under the threshold: 100,000·1.25 + 1,000·10
        (Usage(100_000, 1000, 101_000), 135_000 / 1e6),
        # At the threshold is still the base tier: 200,000·1.25
        (Usage(200_000, 0, 200_000), 250_000 / 1e6),
        # Above: the whole request at the higher tier, cached reads at theirs:
        # 200,000·2.50 + 50,000·0.625 + 2,000·15
        (Usage(250_000, 2000, 252_000, cached_tokens=50_000), 561_250 / 1e6),
    ],
)
def test_prompts_above_the_threshold_are_priced_at_the_long_context_tier(
    usage: Usage, expected: float
) -> None:
    assert cost_usd(usage, GEMINI_PRO) == pytest.approx(expected)


DALL_E_3 = ModelDeployment(
    "dall-e-3",
    "openai",
    "dall-e-3",
    image_prices=(("1024x1024/hd", 0.08), ("1024x1024/standard", 0.04)),
)


def test_images_are_priced_by_size_and_quality() -> None:
    usage = Usage(unit="images", quantity=3.0, price_key="1024x1024/hd")
    assert cost_usd(usage, DALL_E_3) == pytest.approx(0.24)
    assert missing_prices(DALL_E_3, "images", "1024x1024/hd") == ()


def test_an_image_size_without_a_price_is_unpriced_unless_a_unit_price_is_set() -> None:
    usage = Usage(unit="images", quantity=1.0, price_key="1792x1024/hd")
    assert cost_usd(usage, DALL_E_3) is None
    assert missing_prices(DALL_E_3, "images", "1792x1024/hd") == (
        "image_prices['1792x1024/hd'] or unit_price_usd (USD per image)",
    )
    fallback = ModelDeployment("d", "openai", "d", unit_price_usd=0.05)
    assert cost_usd(usage, fallback) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("unit", "quantity", "price", "expected"),
    [
        ("characters", 1000.0, 0.000015, 0.015),  # tts-1: $15 per million characters
        ("seconds", 90.0, 0.0001, 0.009),  # whisper-1: $0.006 a minute
        ("search_units", 2.0, 0.002, 0.004),  # rerank: $2 per 1,000 searches
    ],
)
def test_other_units_cost_quantity_times_price(
    unit: str, quantity: float, price: float, expected: float
) -> None:
    deployment = ModelDeployment("m", "openai", "m", unit_price_usd=price)
    assert cost_usd(Usage(unit=unit, quantity=quantity), deployment) == pytest.approx(expected)
    assert missing_prices(deployment, unit) == ()
    unpriced = ModelDeployment("m", "openai", "m")
    assert cost_usd(Usage(unit=unit, quantity=quantity), unpriced) is None
    assert len(missing_prices(unpriced, unit)) == 1


def test_free_routes_cost_nothing_and_need_no_price() -> None:
    unpriced = ModelDeployment(
        "m", "openai", "m", input_price_per_mtok=None, output_price_per_mtok=None
    )
    assert cost_usd(Usage(unit="requests", quantity=1.0), unpriced) == 0.0
    assert missing_prices(unpriced, "requests") == ()
