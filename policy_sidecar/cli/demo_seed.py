"""The demo's data, created through the admin API (so the audit log shows it too):
an org's applications and keys, OpenAI- and Anthropic-shaped models on the fake
provider, and one policy of each type (plus a shadow one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf import struct_pb2

from policy_sidecar.admin.v1 import api_keys_pb2 as keys_pb
from policy_sidecar.admin.v1 import api_keys_pb2_grpc as keys_grpc
from policy_sidecar.admin.v1 import applications_pb2 as apps_pb
from policy_sidecar.admin.v1 import applications_pb2_grpc as apps_grpc
from policy_sidecar.admin.v1 import configs_pb2 as configs_pb
from policy_sidecar.admin.v1 import configs_pb2_grpc as configs_grpc
from policy_sidecar.admin.v1 import models_pb2 as models_pb
from policy_sidecar.admin.v1 import models_pb2_grpc as models_grpc
from policy_sidecar.admin.v1 import policies_pb2 as policies_pb
from policy_sidecar.admin.v1 import policies_pb2_grpc as policies_grpc

__all__ = ["ORG", "DemoData", "seed"]

ORG: Final = "acme"
ENVIRONMENT: Final = "production"
# The fake provider is Envoy's default cluster in every rendered configuration.
CLUSTER: Final = "upstream"

MODELS: Final = (
    # name, provider, input, output, cached input (USD per million tokens)
    ("gpt-4o-mini", "openai", "0.15", "0.60", "0.075"),
    ("gpt-4o", "openai", "2.50", "10.00", "1.25"),
    ("claude-haiku-4-5", "anthropic", "1.00", "5.00", "0.10"),
)


@dataclass(frozen=True, slots=True)
class DemoData:
    support_app: str
    batch_app: str
    support_key: str
    batch_key: str
    allowlist_policy: str


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def seed(channel: grpc.Channel, token: str) -> DemoData:
    """Create the demo's objects; the secrets of the two keys are returned once."""
    auth = (("authorization", f"Bearer {token}"),)
    apps = apps_grpc.ApplicationServiceStub(channel)  # type: ignore[no-untyped-call]
    configs = configs_grpc.ApplicationConfigServiceStub(channel)  # type: ignore[no-untyped-call]
    keys = keys_grpc.ApiKeyServiceStub(channel)  # type: ignore[no-untyped-call]
    models = models_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
    policies = policies_grpc.PolicyServiceStub(channel)  # type: ignore[no-untyped-call]

    for name, provider, price_in, price_out, price_cached in MODELS:
        models.CreateModel(
            models_pb.CreateModelRequest(
                model=models_pb.Model(
                    name=name,
                    provider=provider,
                    upstream_model=name,
                    upstream_cluster=CLUSTER,
                    input_price_per_mtok=price_in,
                    output_price_per_mtok=price_out,
                    cached_input_price_per_mtok=price_cached,
                    enabled=True,
                )
            ),
            metadata=auth,
        )

    def app_with_key(name: str, description: str) -> tuple[str, str]:
        app = apps.CreateApplication(
            apps_pb.CreateApplicationRequest(
                application=apps_pb.Application(
                    org_id=ORG, name=name, description=description, labels={"demo": "true"}
                )
            ),
            metadata=auth,
        ).application
        configs.UpsertApplicationConfig(
            configs_pb.UpsertApplicationConfigRequest(
                config=configs_pb.ApplicationConfig(
                    app_id=app.id, environment=ENVIRONMENT, enabled=True
                )
            ),
            metadata=auth,
        )
        created = keys.CreateApiKey(
            keys_pb.CreateApiKeyRequest(app_id=app.id, environment=ENVIRONMENT, name="demo key"),
            metadata=auth,
        )
        return app.id, created.secret

    support, support_key = app_with_key("support-bot", "customer support assistant")
    batch, batch_key = app_with_key("batch-jobs", "nightly summarisation")

    def policy(name: str, type_: str, config: dict[str, Any], **scope: Any) -> str:
        created = policies.CreatePolicy(
            policies_pb.CreatePolicyRequest(
                policy=policies_pb.Policy(name=name, type=type_, config=_struct(config), **scope)
            ),
            metadata=auth,
        )
        return str(created.policy.id)

    allowlist = policy(
        "support-bot: small models only",
        "model_allowlist",
        {"models": ["gpt-4o-mini", "claude-haiku-*"]},
        app_id=support,
    )
    policy("64 KiB request bodies", "request_size", {"max_bytes": 65536}, org_id=ORG)
    policy(
        "batch-jobs: 120 requests a minute",
        "rate_limit",
        {"requests": 120, "window": "1m", "key": "app_env"},
        app_id=batch,
    )
    policy(
        "acme: $25 a month",
        "token_limit",
        {"count": "cost_usd", "limit_usd": 25, "window": "month"},
        org_id=ORG,
    )
    policy(
        "prompts under 2,000 tokens",
        "custom_cel",
        {
            "pre_check_expression": "estimated_tokens < 2000",
            "message": "keep prompts under 2,000 tokens",
        },
        org_id=ORG,
    )
    policy(
        "support-bot: 10 requests a minute (trial, shadow)",
        "rate_limit",
        {"requests": 10, "window": "1m", "key": "app"},
        app_id=support,
        mode=policies_pb.POLICY_MODE_SHADOW,
    )
    return DemoData(support, batch, support_key, batch_key, allowlist)
