"""The console's only way to the data: the admin gRPC API, with the user's token.

`AdminClient.call` sends one RPC with `authorization: Bearer <token>` and turns a
failure into `ApiError`, which keeps the google.rpc `BadRequest` field violations
so a form can show each one next to the field it names.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from policy_sidecar.admin.v1 import (
    api_keys_pb2_grpc,
    applications_pb2_grpc,
    audit_pb2_grpc,
    configs_pb2_grpc,
    models_pb2_grpc,
    policies_pb2_grpc,
    usage_pb2_grpc,
)

__all__ = ["AdminClient", "ApiError"]

_Resp = TypeVar("_Resp")
TIMEOUT_SECONDS = 15.0


@dataclass
class ApiError(Exception):
    code: grpc.StatusCode
    message: str
    fields: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def _violations(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in exc.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                for v in bad.field_violations:
                    found[v.field] = (
                        f"{found[v.field]}; {v.description}" if v.field in found else v.description
                    )
    return found


class AdminClient:
    """The admin service's stubs over one channel (shared by every user).

    The generated stubs are untyped; `call` is typed by the caller's annotation.
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.apps = applications_pb2_grpc.ApplicationServiceStub(channel)  # type: ignore[no-untyped-call]
        self.configs = configs_pb2_grpc.ApplicationConfigServiceStub(channel)  # type: ignore[no-untyped-call]
        self.keys = api_keys_pb2_grpc.ApiKeyServiceStub(channel)  # type: ignore[no-untyped-call]
        self.models = models_pb2_grpc.ModelServiceStub(channel)  # type: ignore[no-untyped-call]
        self.policies = policies_pb2_grpc.PolicyServiceStub(channel)  # type: ignore[no-untyped-call]
        self.usage = usage_pb2_grpc.UsageServiceStub(channel)  # type: ignore[no-untyped-call]
        self.audit = audit_pb2_grpc.AuditServiceStub(channel)  # type: ignore[no-untyped-call]

    async def call(
        self, method: Callable[..., Awaitable[_Resp]], request: Any, token: str
    ) -> _Resp:
        try:
            return await method(
                request,
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as exc:
            raise ApiError(exc.code(), exc.details() or exc.code().name, _violations(exc)) from exc
