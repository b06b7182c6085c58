from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from policy_sidecar.admin import AdminServer
from policy_sidecar.admin.auth import TokenError, is_read_only, parse_tokens
from policy_sidecar.admin.v1 import applications_pb2 as apps
from policy_sidecar.admin.v1 import policies_pb2 as pol
from policy_sidecar.admin.v1 import usage_pb2 as usage

from .conftest import Client
from .helpers import ADMIN_TOKEN, AUTH, READ, READ_TOKEN, fails

# (metadata, call, expected code); OK means the auth layer let it through.
NO_AUTH = ()
WRONG = (("authorization", f"Bearer {ADMIN_TOKEN}x"),)
NOT_BEARER = (("authorization", f"Basic {ADMIN_TOKEN}"),)
PREFIX_ONLY = (("authorization", f"Bearer {ADMIN_TOKEN[:-1]}"),)


def _create(c: Client, md: tuple[tuple[str, str], ...]) -> object:
    return c.apps.CreateApplication(
        apps.CreateApplicationRequest(application=apps.Application(org_id="o", name="n")),
        metadata=md,
    )


def _list(c: Client, md: tuple[tuple[str, str], ...]) -> object:
    return c.apps.ListApplications(apps.ListApplicationsRequest(), metadata=md)


def _validate(c: Client, md: tuple[tuple[str, str], ...]) -> object:
    return c.policies.ValidatePolicy(
        pol.ValidatePolicyRequest(config=pol.PolicyConfig(type="request_size")), metadata=md
    )


def _recent(c: Client, md: tuple[tuple[str, str], ...]) -> object:
    return c.usage.ListRecentRequests(usage.ListRecentRequestsRequest(), metadata=md)


OK = grpc.StatusCode.OK
CASES = [
    (NO_AUTH, _list, grpc.StatusCode.UNAUTHENTICATED),
    (WRONG, _list, grpc.StatusCode.UNAUTHENTICATED),
    (NOT_BEARER, _list, grpc.StatusCode.UNAUTHENTICATED),
    (PREFIX_ONLY, _list, grpc.StatusCode.UNAUTHENTICATED),
    (NO_AUTH, _create, grpc.StatusCode.UNAUTHENTICATED),
    (READ, _create, grpc.StatusCode.PERMISSION_DENIED),
    (READ, _validate, grpc.StatusCode.PERMISSION_DENIED),
    (READ, _list, OK),
    (READ, _recent, OK),
    (AUTH, _create, OK),
    (AUTH, _validate, OK),
    ((("authorization", f"bearer  {READ_TOKEN} "),), _list, OK),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("metadata", "call", "code"), CASES)
async def test_tokens_and_roles(
    client: Client, admin: AdminServer, metadata: object, call: object, code: grpc.StatusCode
) -> None:
    if code is OK:
        await call(client, metadata)  # type: ignore[operator]
        return
    exc = await fails(call(client, metadata))  # type: ignore[operator]
    assert exc.code() == code
    # The presented token never comes back in the error.
    assert ADMIN_TOKEN not in (exc.details() or "") and READ_TOKEN not in (exc.details() or "")
    reason = "unauthenticated" if code == grpc.StatusCode.UNAUTHENTICATED else "permission_denied"
    assert admin.metrics.auth_failures.labels(reason)._value.get() == 1


@pytest.mark.postgres
async def test_health_is_open_reflection_is_not(client: Client) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    reply = await health.Check(
        health_pb2.HealthCheckRequest(service="policy_sidecar.admin.v1.PolicyService")
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    async def ask(md: tuple[tuple[str, str], ...]) -> list[str]:
        call = stub.ServerReflectionInfo(iter([request]), metadata=md)
        names = []
        async for response in call:
            names += [s.name for s in response.list_services_response.service]
        return names

    assert "policy_sidecar.admin.v1.PolicyService" in await ask(READ)
    exc = await fails(ask(()))
    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("method", "read_only"),
    [
        ("/policy_sidecar.admin.v1.ApplicationService/GetApplication", True),
        ("/policy_sidecar.admin.v1.ApiKeyService/ListApiKeys", True),
        ("/policy_sidecar.admin.v1.UsageService/GetUsageSummary", True),
        ("/policy_sidecar.admin.v1.ApiKeyService/CreateApiKey", False),
        ("/policy_sidecar.admin.v1.ApiKeyService/RevokeApiKey", False),
        ("/policy_sidecar.admin.v1.PolicyService/TestPolicy", False),
        ("/policy_sidecar.admin.v1.ApplicationConfigService/UpsertApplicationConfig", False),
    ],
)
def test_read_only_methods(method: str, read_only: bool) -> None:
    assert is_read_only(method) is read_only


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("ops:admin", "expected name:role:token"),
        (":admin:SECRET-SECRET-SECRET", "empty name"),
        ("ops:root:SECRET-SECRET-SECRET", "role must be admin or readonly"),
        ("ops:admin:SECRET", "shorter than 16"),
    ],
)
def test_token_file_errors_name_the_entry_not_the_token(line: str, error: str) -> None:
    with pytest.raises(TokenError, match=error) as info:
        parse_tokens(["# comment", "", line], source="tokens.txt")
    assert "tokens.txt: entry 3" in str(info.value)
    assert "SECRET" not in str(info.value)


def test_token_repr_hides_secret() -> None:
    (token,) = parse_tokens(["ops:admin:0123456789abcdef:with-colon"], source="env")
    assert token.token == b"0123456789abcdef:with-colon"
    assert "0123" not in repr(token)
