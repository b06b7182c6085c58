"""ValidatePolicy and TestPolicy: every registered policy type, CEL positions, limits
against a given counter value, cost limits priced from the model."""

from __future__ import annotations

import grpc
import pytest

from policy_sidecar.admin.v1 import policies_pb2 as pb

from .conftest import Client
from .helpers import AUTH, fails, field_violations
from .test_policies import ALLOWLIST, create, doc

pytestmark = pytest.mark.postgres


def _config(type_: str, **config: object) -> pb.ValidatePolicyRequest:
    return pb.ValidatePolicyRequest(config=pb.PolicyConfig(type=type_, config=doc(**config)))


def _cel(source: str, phase: int = pb.PHASE_PRE_REQUEST) -> pb.ValidatePolicyRequest:
    return pb.ValidatePolicyRequest(expression=pb.CelExpression(source=source, phase=phase))


@pytest.mark.parametrize(
    ("request_", "errors"),
    [
        (_config("request_size", max_bytes=100), []),
        (_config("request_size", max_bytes=-1), [("config.config.max_bytes", 0, 0)]),
        (_config("nope"), [("config.type", 0, 0)]),
        (pb.ValidatePolicyRequest(config=pb.PolicyConfig()), [("config.type", 0, 0)]),
        (_cel('model.startsWith("gpt-4o") && estimated_tokens < 4000'), []),
        (_cel("total_tokens > 1000", pb.PHASE_POST_REQUEST), []),
        # A post-request variable is unknown before the request.
        (_cel("total_tokens > 1000"), [("expression.source", 1, 1)]),
        (_cel("estimated_tokens < 10 &&\n  model > 3"), [("expression.source", 2, 9)]),
    ],
)
async def test_validate(client: Client, request_: pb.ValidatePolicyRequest, errors: list) -> None:
    response = await client.policies.ValidatePolicy(request_, metadata=AUTH)
    assert response.valid is (not errors)
    assert [(e.field, e.line, e.column) for e in response.errors] == errors
    assert all(e.message for e in response.errors)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ValidatePolicyRequest(), "target"),
        (pb.ValidatePolicyRequest(expression=pb.CelExpression(source="true")), "expression.phase"),
    ],
)
async def test_validate_bad_requests(
    client: Client, request_: pb.ValidatePolicyRequest, field: str
) -> None:
    exc = await fails(client.policies.ValidatePolicy(request_, metadata=AUTH))
    assert list(field_violations(exc)) == [field]


SAMPLE = pb.SampleRequest(
    model="gpt-4o-mini", org_id="acme", app_id="app_1", environment="prod", request_size_bytes=500
)


def _sample(**changes: object) -> pb.SampleRequest:
    s = pb.SampleRequest()
    s.CopyFrom(SAMPLE)
    for k, v in changes.items():
        setattr(s, k, v)
    return s


SIZE = pb.Policy(name="small", type="request_size", config=doc(max_bytes=1000))


def _with(policy: pb.Policy, **changes: object) -> pb.Policy:
    p = pb.Policy()
    p.CopyFrom(policy)
    for k, v in changes.items():
        setattr(p, k, v)
    return p


@pytest.mark.parametrize(
    ("policy", "sample", "verdict", "applies", "code"),
    [
        (ALLOWLIST, SAMPLE, pb.VERDICT_ALLOW, True, ""),
        (ALLOWLIST, _sample(model="gpt-4o-2024"), pb.VERDICT_ALLOW, True, ""),
        (ALLOWLIST, _sample(model="claude"), pb.VERDICT_DENY, True, "model_not_allowed"),
        (
            _with(ALLOWLIST, mode=pb.POLICY_MODE_SHADOW),
            _sample(model="claude"),
            pb.VERDICT_ALLOW,
            True,
            "model_not_allowed",
        ),
        (_with(ALLOWLIST, app_id="app_2"), _sample(model="claude"), pb.VERDICT_ALLOW, False, ""),
        (
            _with(ALLOWLIST, model_pattern="claude*"),
            _sample(model="gpt-5"),
            pb.VERDICT_ALLOW,
            False,
            "",
        ),
        (_with(ALLOWLIST, enabled=False), _sample(model="claude"), pb.VERDICT_ALLOW, False, ""),
        (SIZE, SAMPLE, pb.VERDICT_ALLOW, True, ""),
        (SIZE, _sample(request_size_bytes=5000), pb.VERDICT_DENY, True, "request_too_large"),
    ],
)
async def test_test_policy_inline(
    client: Client,
    policy: pb.Policy,
    sample: pb.SampleRequest,
    verdict: int,
    applies: bool,
    code: str,
) -> None:
    response = await client.policies.TestPolicy(
        pb.TestPolicyRequest(policy=policy, request=sample), metadata=AUTH
    )
    assert (response.verdict, response.applies, response.violation.code) == (verdict, applies, code)
    assert response.reason
    if code:
        assert response.violation.http_status in (403, 413)
        assert response.shadow == (policy.mode == pb.POLICY_MODE_SHADOW)


async def test_test_stored_policy(client: Client) -> None:
    stored = await create(client, SIZE)
    response = await client.policies.TestPolicy(
        pb.TestPolicyRequest(policy_id=stored.id, request=_sample(request_size_bytes=2000)),
        metadata=AUTH,
    )
    assert response.verdict == pb.VERDICT_DENY
    assert response.violation.details["policy_id"] == stored.id
    assert response.violation.details["limit"] == 1000
    missing = await fails(
        client.policies.TestPolicy(
            pb.TestPolicyRequest(policy_id="pol_x", request=SAMPLE), metadata=AUTH
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "violations"),
    [
        (pb.TestPolicyRequest(), {"request.model", "policy_source"}),
        (
            pb.TestPolicyRequest(policy=pb.Policy(type="request_size"), request=SAMPLE),
            {"policy.config.max_bytes"},
        ),
    ],
)
async def test_test_policy_violations(
    client: Client, request_: pb.TestPolicyRequest, violations: set[str]
) -> None:
    exc = await fails(client.policies.TestPolicy(request_, metadata=AUTH))
    assert set(field_violations(exc)) == violations


@pytest.mark.parametrize(
    ("type_", "config", "errors"),
    [
        ("custom_cel", {"pre_check_expression": "estimated_tokens < 4000"}, []),
        (
            "custom_cel",
            {"pre_check_expression": "estimated_tokens < 10 &&\n  model > 3"},
            [("config.config.pre_check_expression", 2, 9)],
        ),
        (
            "custom_cel",
            {"post_check_expression": "total_tokens > "},
            [("config.config.post_check_expression", 1, 16)],
        ),
        ("custom_cel", {}, [("config.config", 0, 0)]),
        ("rate_limit", {"requests": 10, "window": "1m"}, []),
        ("rate_limit", {"requests": 10, "window": "fortnight"}, [("config.config.window", 0, 0)]),
        (
            "token_limit",
            {"limit": 1000, "window": "1h", "count": "cost_usd"},
            [("config.config", 0, 0)],
        ),
    ],
)
async def test_validate_every_registered_type(
    client: Client, type_: str, config: dict, errors: list
) -> None:
    response = await client.policies.ValidatePolicy(_config(type_, **config), metadata=AUTH)
    assert [(e.field, e.line, e.column) for e in response.errors] == errors


async def test_cel_error_position_on_create(client: Client) -> None:
    policy = pb.Policy(name="c", type="custom_cel", config=doc(pre_check_expression="model > 3"))
    exc = await fails(
        client.policies.CreatePolicy(pb.CreatePolicyRequest(policy=policy), metadata=AUTH)
    )
    ((field, description),) = field_violations(exc).items()
    assert field == "policy.config.pre_check_expression" and "(line 1, column 7)" in description


RATE = pb.Policy(name="rpm", type="rate_limit", config=doc(requests=10, window="1m"))
TOKENS = pb.Policy(
    name="tph", type="token_limit", config=doc(limit=1000, window="1h", default_max_output=0)
)
CEL = pb.Policy(
    name="cel",
    type="custom_cel",
    config=doc(
        pre_check_expression="estimated_tokens < 4000",
        post_check_expression="completion_tokens < 100",
    ),
)
DONE = pb.SampleResponse(prompt_tokens=10, completion_tokens=500)


@pytest.mark.parametrize(
    ("policy", "sample", "used", "response", "verdict", "code"),
    [
        (RATE, SAMPLE, 0, None, pb.VERDICT_ALLOW, ""),
        (RATE, SAMPLE, 9, None, pb.VERDICT_ALLOW, ""),
        (RATE, SAMPLE, 10, None, pb.VERDICT_DENY, "rate_limit_exceeded"),
        (TOKENS, _sample(estimated_tokens=900), 100, None, pb.VERDICT_ALLOW, ""),
        (TOKENS, _sample(estimated_tokens=900), 101, None, pb.VERDICT_DENY, "token_limit_exceeded"),
        (CEL, _sample(estimated_tokens=10), 0, None, pb.VERDICT_ALLOW, ""),
        (CEL, _sample(estimated_tokens=5000), 0, None, pb.VERDICT_DENY, "policy_violation"),
        # Post-request: recorded, not a denial of the request already served.
        (CEL, _sample(estimated_tokens=10), 0, DONE, pb.VERDICT_ALLOW, "policy_violation"),
    ],
)
async def test_test_policy_limits_and_cel(
    client: Client,
    policy: pb.Policy,
    sample: pb.SampleRequest,
    used: int,
    response: pb.SampleResponse | None,
    verdict: int,
    code: str,
) -> None:
    result = await client.policies.TestPolicy(
        pb.TestPolicyRequest(policy=policy, request=sample, counter_used=used, response=response),
        metadata=AUTH,
    )
    assert (result.verdict, result.violation.code) == (verdict, code), result.reason
    if response is not None:
        assert result.violation.phase == pb.PHASE_POST_REQUEST and "recorded" in result.reason
    if code and policy.type != "custom_cel":
        assert (
            result.violation.http_status == 429
            and "retry_after_seconds" in result.violation.details
        )


async def test_cost_limit_uses_the_model_prices(client: Client) -> None:
    from policy_sidecar.admin.v1 import models_pb2

    policy = pb.Policy(
        name="budget",
        type="token_limit",
        config=doc(count="cost_usd", limit_usd=0.001, window="1d", default_max_output=0),
    )
    request = pb.TestPolicyRequest(policy=policy, request=_sample(estimated_tokens=10_000))
    unpriced = await client.policies.TestPolicy(request, metadata=AUTH)
    assert unpriced.verdict == pb.VERDICT_ALLOW  # an unknown model costs nothing
    await client.models.CreateModel(
        models_pb2.CreateModelRequest(
            model=models_pb2.Model(
                name="gpt-4o-mini",
                provider="openai",
                upstream_model="gpt-4o-mini",
                upstream_cluster="openai",
                input_price_per_mtok="0.15",
                # Set, or the model is unpriced (an empty price is not 0).
                output_price_per_mtok="0",
            )
        ),
        metadata=AUTH,
    )
    priced = await client.policies.TestPolicy(request, metadata=AUTH)
    assert priced.verdict == pb.VERDICT_DENY  # 10k tokens at $0.15/M = $0.0015 > $0.001
    assert priced.violation.details["unit"] == "usd"


async def test_cel_post_check_on_cost_sees_the_model_prices(client: Client) -> None:
    from policy_sidecar.admin.v1 import models_pb2

    policy = pb.Policy(
        name="cheap answers",
        type="custom_cel",
        config=doc(post_check_expression="cost_usd < 0.001"),
    )
    served = pb.SampleResponse(prompt_tokens=10_000, completion_tokens=0, status_code=200)
    request = pb.TestPolicyRequest(policy=policy, request=SAMPLE, response=served)
    unpriced = await client.policies.TestPolicy(request, metadata=AUTH)
    assert unpriced.violation.code == ""  # an unknown price reads as 0.0
    await client.models.CreateModel(
        models_pb2.CreateModelRequest(
            model=models_pb2.Model(
                name="gpt-4o-mini",
                provider="openai",
                upstream_model="gpt-4o-mini",
                upstream_cluster="openai",
                input_price_per_mtok="0.15",
                # Set, or the model is unpriced (an empty price is not 0).
                output_price_per_mtok="0",
            )
        ),
        metadata=AUTH,
    )
    priced = await client.policies.TestPolicy(request, metadata=AUTH)
    # 10k prompt tokens at $0.15/M = $0.0015: the post-check is violated (recorded).
    assert priced.violation.code == "policy_violation", priced.reason
    assert priced.violation.phase == pb.PHASE_POST_REQUEST
