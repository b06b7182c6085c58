"""A deployed model without the price its route bills by: refused by default, or
allowed and reported (``unpriced: allow_and_report``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest

from policy_sidecar.catalog.deployments import ModelDeployment
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.store.standalone import StandaloneConfig, parse_standalone_config
from tests.conftest import KEY, ListRecorder
from tests.extproc.messages import body, chat_body, request_headers


def _models(config: StandaloneConfig, **prices: float | None) -> dict[str, ModelDeployment]:
    models = dict(config.models)
    models["gpt-4o-mini"] = replace(models["gpt-4o-mini"], **prices)  # type: ignore[arg-type]
    return models


async def _send(p: PolicyProcessor) -> object:
    data = chat_body()
    await p.on_request_headers(request_headers(KEY, body=data))
    return await p.on_request_body(body(data))


@pytest.mark.parametrize(
    ("prices", "missing"),
    [
        ({"input_price_per_mtok": None, "output_price_per_mtok": None},
         ["input_price_per_mtok", "output_price_per_mtok"]),
        ({"output_price_per_mtok": None}, ["output_price_per_mtok"]),
    ],
)  # fmt: skip
async def test_an_unpriced_model_is_refused_naming_the_missing_price(
    make_services: Callable[..., Services],
    config: StandaloneConfig,
    recorder: ListRecorder,
    prices: dict[str, float | None],
    missing: list[str],
) -> None:
    p = PolicyProcessor(make_services(models=_models(config, **prices)))
    response = await _send(p)
    immediate = response.immediate_response  # type: ignore[attr-defined]
    error = json.loads(immediate.body)["error"]
    assert (immediate.status.code, error["code"]) == (403, "model_unpriced")
    for name in missing:
        assert name in error["message"]
    assert error["details"]["missing_prices"] == missing
    [record] = recorder.records
    assert (record.decision, record.status_code, record.requested_model) == (
        "deny",
        403,
        "gpt-4o-mini",
    )


async def test_allow_and_report_lets_an_unpriced_model_through(
    make_services: Callable[..., Services], config: StandaloneConfig
) -> None:
    models = _models(config, input_price_per_mtok=None, output_price_per_mtok=None)
    p = PolicyProcessor(make_services(models=models, unpriced="allow_and_report"))
    response = await _send(p)
    assert response.WhichOneof("response") == "request_body"  # type: ignore[attr-defined]


async def test_a_free_model_is_priced_at_zero_and_allowed(
    make_services: Callable[..., Services], config: StandaloneConfig
) -> None:
    models = _models(config, input_price_per_mtok=0.0, output_price_per_mtok=0.0)
    p = PolicyProcessor(make_services(models=models))
    response = await _send(p)
    assert response.WhichOneof("response") == "request_body"  # type: ignore[attr-defined]


def test_the_standalone_file_reads_omitted_prices_as_unpriced_and_zero_as_free() -> None:
    text = """
version: 1
unpriced: allow_and_report
models:
  - {name: a, provider: openai}
  - {name: b, provider: openai, input_price_per_mtok: 0, output_price_per_mtok: 0}
  - {name: c, provider: openai, input_price_per_mtok: null, output_price_per_mtok: 1}
"""
    config = parse_standalone_config(text, source="t.yaml")
    assert config.unpriced == "allow_and_report"
    a, b, c = (config.models[n] for n in "abc")
    assert (a.input_price_per_mtok, a.output_price_per_mtok) == (None, None)
    assert (b.input_price_per_mtok, b.output_price_per_mtok) == (0.0, 0.0)
    assert (c.input_price_per_mtok, c.output_price_per_mtok) == (None, 1.0)
    assert parse_standalone_config("version: 1\n", source="t.yaml").unpriced == "deny"
