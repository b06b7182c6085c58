"""Drive a PolicyProcessor through both request phases, with every policy type loaded.

Shared by the request-limit regression tests and the request-parsing fuzz tests.
"""

from __future__ import annotations

import json
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.counters.memory import InMemoryCounterStore
from policy_sidecar.extproc.policy_stream import PolicyProcessor
from policy_sidecar.extproc.services import Services
from policy_sidecar.limits.enforcer import Enforcer
from policy_sidecar.limits.penalties import InMemoryPenaltyBox
from policy_sidecar.policy.engine import PolicyEngine
from policy_sidecar.policy.source import StaticPolicySource
from policy_sidecar.providers.registry import ProviderRegistry, default_registry
from policy_sidecar.store.standalone import StandaloneIdentityResolver, parse_standalone_config
from policy_sidecar.tokens import TokenEstimator
from tests.conftest import KEY, FakeClock, ListRecorder
from tests.extproc.messages import body, request_headers

# No request_size policy small enough to stop a deep body before it is parsed; token
# and cost limits so reservations are computed from max_tokens; a CEL check reading it.
CONFIG = f"""
version: 1
applications:
  - id: app1
    org_id: org1
    keys:
      - environment: dev
        key: {KEY}
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15,
      output_price_per_mtok: 0.6}}
  # A model is called on its own provider's API (model_provider_mismatch otherwise).
  - {{name: claude-haiku-4-5, provider: anthropic, input_price_per_mtok: 1,
      output_price_per_mtok: 5}}
  - {{name: gemini-2.5-flash, provider: gemini, input_price_per_mtok: 0.3,
      output_price_per_mtok: 2.5}}
  - name: fast
    provider: openai
    upstream_model: gpt-4o-mini
    route: cluster-b
    input_price_per_mtok: 0.15
    output_price_per_mtok: 0.6
policies:
  - id: p-size
    name: one MiB
    type: request_size
    config: {{max_bytes: 1048576}}
  - id: p-rate
    name: many requests
    type: rate_limit
    config: {{requests: 1000000000, window: 1m, key: app}}
  - id: p-tokens
    name: many tokens
    type: token_limit
    config: {{limit: 1000000000000, window: 1d, count: total, key: app_model}}
  - id: p-cost
    name: many dollars
    type: token_limit
    config: {{limit_usd: 1000000.0, window: 1d, count: cost_usd, key: app}}
  - id: p-cel
    name: any output size
    type: custom_cel
    config: {{pre_check_expression: "max_tokens >= -1"}}
"""

# (provider, path) for every request parser; "model" is deployed, the paths name it.
ROUTES: dict[str, str] = {
    "openai-chat": "/v1/chat/completions",
    "openai-completions": "/v1/completions",
    "openai-embeddings": "/v1/embeddings",
    "openai-responses": "/v1/responses",
    "azure": "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
    "anthropic": "/v1/messages",
    "cohere-v1": "/v1/chat",
    "cohere-v2": "/v2/chat",
    "gemini": "/v1beta/models/gemini-2.5-flash:generateContent",
}


def limit_services(
    recorder: ListRecorder,
    estimator: TokenEstimator,
    *,
    providers: ProviderRegistry | None = None,
    counters: InMemoryCounterStore | None = None,
) -> Services:
    config = parse_standalone_config(CONFIG, source="limits.yaml")
    clock = FakeClock()
    return Services(
        identities=StandaloneIdentityResolver(config.keys),
        policies=StaticPolicySource(PolicyEngine(config.policies)),
        enforcer=Enforcer(counters or InMemoryCounterStore(), InMemoryPenaltyBox(), clock),
        providers=providers or default_registry(),
        estimator=estimator,
        recorder=recorder,
        models=config.models,
        clock=clock,
    )


async def drive(services: Services, path: str, data: bytes) -> pb.ProcessingResponse:
    """Headers (with the key), then the whole body; the response that ends the request."""
    processor = PolicyProcessor(services)
    first = await processor.on_request_headers(request_headers(KEY, path=path, body=data))
    if processor.done:
        return first
    return await processor.on_request_body(body(data))


def error_in_shape(route: str, status: int, payload: bytes) -> dict[str, Any]:
    """The error object of a provider-shaped error body, asserting the shape."""
    sent = json.loads(payload)
    if route.startswith(("openai", "azure")):
        error = sent["error"]
        assert set(error) == {"message", "type", "param", "code", "details"}
    elif route == "anthropic":
        assert sent["type"] == "error"
        error = sent["error"]
        assert set(error) == {"type", "message", "details"}
    elif route.startswith("cohere"):
        error = sent
        assert set(error) == {"message", "details"}
    else:
        error = sent["error"]
        assert error["code"] == status
        assert isinstance(error["status"], str)
        assert isinstance(error["details"], list)
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)
