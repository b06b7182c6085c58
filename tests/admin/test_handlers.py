"""The edge wrapper: unexpected errors become a generic INTERNAL, every call is counted,
and a servicer missing a method is caught at start-up. No database needed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from policy_sidecar.admin.handlers import generic_handler
from policy_sidecar.admin.metrics import REQUESTS_TOTAL, AdminMetrics
from policy_sidecar.admin.v1 import applications_pb2 as pb
from policy_sidecar.admin.v1 import applications_pb2_grpc

from .helpers import fails

SERVICE = pb.DESCRIPTOR.services_by_name["ApplicationService"]


class Broken:
    async def GetApplication(self, request: Any, context: Any) -> Any:
        raise RuntimeError("db password is hunter2")

    async def ListApplications(self, request: Any, context: Any) -> Any:
        return pb.ListApplicationsResponse(next_page_token="t")

    CreateApplication = UpdateApplication = ArchiveApplication = GetApplication


@pytest.fixture
async def stub() -> AsyncIterator[
    tuple[applications_pb2_grpc.ApplicationServiceStub, AdminMetrics]
]:
    metrics = AdminMetrics.create()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([generic_handler(SERVICE, Broken(), metrics)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield applications_pb2_grpc.ApplicationServiceStub(channel), metrics
    finally:
        await server.stop(None)


async def test_unexpected_error_is_internal_and_logged(
    stub: tuple[Any, AdminMetrics], caplog: pytest.LogCaptureFixture
) -> None:
    client, metrics = stub
    with caplog.at_level(logging.ERROR, logger="policy_sidecar.admin.handlers"):
        exc = await fails(client.GetApplication(pb.GetApplicationRequest(id="x")))
    assert exc.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (exc.details() or "")
    assert "GetApplication failed" in caplog.text
    assert (await client.ListApplications(pb.ListApplicationsRequest())).next_page_token == "t"

    def count(method: str, code: str) -> float | None:
        return metrics.registry.get_sample_value(
            REQUESTS_TOTAL + "_total",
            {"method": f"policy_sidecar.admin.v1.ApplicationService.{method}", "code": code},
        )

    assert (count("GetApplication", "INTERNAL"), count("ListApplications", "OK")) == (1.0, 1.0)


def test_missing_method_fails_at_registration() -> None:
    class Partial:
        async def GetApplication(self, request: Any, context: Any) -> Any: ...

    with pytest.raises(TypeError, match=r"does not implement .*CreateApplication"):
        generic_handler(SERVICE, Partial(), AdminMetrics.create())
