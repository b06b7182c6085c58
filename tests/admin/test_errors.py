from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from policy_sidecar.admin.errors import FieldViolation, InvalidArgument, status_for
from policy_sidecar.admin.policy_check import UnsupportedPolicyType
from policy_sidecar.store.postgres.errors import (
    AlreadyExistsError,
    InvalidError,
    NotFoundError,
    VersionConflictError,
)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidArgument([FieldViolation("a", "b")]), grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidError("policy", "config", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFoundError("policy", "pol_1"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExistsError("model", "name"), grpc.StatusCode.ALREADY_EXISTS),
        (VersionConflictError("policy", "pol_1", 1, 2), grpc.StatusCode.ABORTED),
        (UnsupportedPolicyType("rate_limit"), grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_status_codes_carry_a_rich_status(exc: Exception, code: grpc.StatusCode) -> None:
    status = status_for(exc)
    assert status is not None and status.code == code
    ((key, value),) = status.trailing_metadata
    assert key == "grpc-status-details-bin"
    rich = status_pb2.Status.FromString(value)
    assert rich.code == code.value[0] and rich.message == status.details


def test_bad_request_lists_every_violation() -> None:
    status = status_for(InvalidArgument([FieldViolation("a", "x"), FieldViolation("b", "y")]))
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status_pb2.Status.FromString(status.trailing_metadata[0][1]).details[0].Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [("a", "x"), ("b", "y")]


def test_unexpected_errors_are_not_mapped() -> None:
    assert status_for(RuntimeError("boom")) is None
