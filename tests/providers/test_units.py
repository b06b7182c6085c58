"""Every metered route declares the unit it bills by."""

from __future__ import annotations

import pytest

from policy_sidecar.providers import anthropic, azure, cohere, gemini, openai
from policy_sidecar.providers.units import ROUTE_UNITS, UNITS, bills_tokens, route_unit


def _every_metered_route() -> set[tuple[str, str]]:
    routes = {("openai", op) for op in openai._OPERATIONS.values()}
    routes |= {("azure", op) for op in (*azure._OPS.values(), *azure._V1.values())}
    routes |= {("gemini", op) for op in gemini._OPERATIONS.values()}
    routes |= {("cohere", op) for op, _ in cohere._ROUTES.values()}
    routes |= {("anthropic", "messages"), ("anthropic", "count_tokens")}
    assert anthropic.AnthropicProvider().match("POST", "/v1/messages") is not None
    assert anthropic.AnthropicProvider().match("POST", "/v1/messages/count_tokens") is not None
    return routes


@pytest.mark.parametrize(("provider", "operation"), sorted(_every_metered_route()))
def test_every_metered_route_declares_a_known_unit(provider: str, operation: str) -> None:
    unit = route_unit(provider, operation)
    assert unit in UNITS, (provider, operation)


def test_the_table_declares_no_route_that_does_not_exist() -> None:
    assert set(ROUTE_UNITS) == _every_metered_route()


def test_no_route_no_unit() -> None:
    assert route_unit(None, None) is None
    assert route_unit("openai", "batches") is None


@pytest.mark.parametrize(("unit", "tokens"), [("tokens", True), (None, True), ("images", False)])
def test_token_limits_apply_only_to_token_routes(unit: str | None, tokens: bool) -> None:
    assert bills_tokens(unit) is tokens
