"""The edge in standalone mode, through the real Envoy: unknown endpoints, spellings of
known ones, internal headers and ?key= (the same checks run in production mode, in
test_production_e2e.py)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

import pytest

from policy_sidecar.cli.launcher import Stack, start_stack
from policy_sidecar.store.standalone import parse_standalone_config

from . import edge_checks
from .conftest import KEY, write_config

pytestmark = pytest.mark.e2e

CONFIG = f"""
version: 1
{{unknown_paths}}
applications:
  - id: edge-app
    org_id: edge-org
    keys:
      - environment: dev
        key: {KEY}
models:
  - name: gpt-4o-mini
    provider: openai
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - {{{{name: gpt-4o, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}}}
  - name: gemini-2.0-flash
    provider: gemini
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
  - {{{{name: no-price, provider: openai, upstream_model: gpt-4o-mini}}}}
policies:
  - id: pol-allow
    name: no gpt-4o
    type: model_allowlist
    config: {{{{models: [gpt-4o-mini, gemini-2.0-flash]}}}}
"""


@pytest.fixture(
    scope="module", params=["", "unknown_paths: passthrough"], ids=["default", "passthrough"]
)
def edge_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("edge")
    config = write_config(workdir, CONFIG.format(unknown_paths=request.param))
    running = start_stack(workdir, config)
    try:
        yield running
    finally:
        running.stop()


def test_edge(edge_stack: Stack, request: pytest.FixtureRequest) -> None:
    url = edge_stack.url
    if request.node.callspec.id == "default":
        edge_checks.check_unmetered_endpoints_are_denied(url, KEY)
    else:
        # Opting in forwards unknown endpoints unmetered, and only those.
        reply = edge_checks.send(url, "POST", "/v1/assistants", key=KEY, body={})
        assert reply.upstream == "fake-provider"
    edge_checks.check_not_metered_endpoints_are_denied(url, KEY)
    # A deployed model without prices is refused (unpriced: deny, the default).
    unpriced = {**edge_checks.CHAT, "model": "no-price"}
    reply = edge_checks.send(url, "POST", "/v1/chat/completions", key=KEY, body=unpriced)
    assert (reply.status, reply.upstream) == (403, None), reply
    assert reply.error["code"] == "model_unpriced", reply
    assert "input_price_per_mtok" in reply.error["message"], reply
    edge_checks.check_free_routes_are_allowed(url, KEY)
    edge_checks.check_no_spelling_bypasses_policy(url, KEY)
    edge_checks.check_internal_headers_never_pass(url, KEY)
    edge_checks.check_query_key_only_on_gemini(url, KEY)


def test_the_shipped_example_config_denies_unknown_endpoints() -> None:
    text = resources.files("policy_sidecar").joinpath("examples/standalone.yaml").read_text()
    assert parse_standalone_config(text, source="example").unknown_paths == "deny"
    assert parse_standalone_config("version: 1\n", source="empty").unknown_paths == "deny"
