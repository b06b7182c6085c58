"""Errors of the admin API and their gRPC statuses, with google.rpc details.

Servicers raise `InvalidArgument` (with field violations) or let store errors
propagate; `status_for` turns either into a status at the edge (see handlers.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc
import psycopg
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from policy_sidecar.admin.policy_check import UnsupportedPolicyType
from policy_sidecar.store.postgres.errors import (
    AlreadyExistsError,
    InvalidError,
    NotFoundError,
    StoreError,
    VersionConflictError,
    safe_reason,
)

__all__ = [
    "DOMAIN",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "Violations",
    "status_for",
]

DOMAIN = "policy-sidecar.admin"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(Exception):
    """The request is invalid; every problem found names its field."""

    def __init__(self, violations: Iterable[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))


class FailedPrecondition(Exception):
    """The target exists but is in a state that forbids the call (e.g. archived)."""

    def __init__(self, type_: str, subject: str, description: str) -> None:
        super().__init__(f"{subject}: {description}")
        self.type = type_
        self.subject = subject
        self.description = description


class Violations:
    """Collects field violations so one response reports every problem at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def require(self, value: object, field: str) -> None:
        if not value:
            self.add(field, "required")

    def check(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)


def _status(code: grpc.StatusCode, message: str, *details: object) -> grpc.Status:
    packed = []
    for detail in details:
        any_detail = any_pb2.Any()
        any_detail.Pack(detail)  # type: ignore[arg-type]
        packed.append(any_detail)
    proto = status_pb2.Status(code=code.value[0], message=message, details=packed)
    return rpc_status.to_status(proto)  # type: ignore[no-any-return]


def bad_request(violations: Iterable[FieldViolation], message: str | None = None) -> grpc.Status:
    items = tuple(violations)
    detail = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in items
        ]
    )
    text = message or "invalid request: " + "; ".join(f"{v.field}: {v.description}" for v in items)
    return _status(grpc.StatusCode.INVALID_ARGUMENT, text, detail)


def status_for(exc: Exception) -> grpc.Status | None:
    """The status for a domain error, or None for an unexpected exception."""
    if isinstance(exc, InvalidArgument):
        return bad_request(exc.violations)
    if isinstance(exc, InvalidError):
        return bad_request([FieldViolation(exc.field, exc.reason)], str(exc))
    if isinstance(exc, NotFoundError):
        info = error_details_pb2.ResourceInfo(
            resource_type=exc.kind, resource_name=exc.key, description=str(exc)
        )
        return _status(grpc.StatusCode.NOT_FOUND, str(exc), info)
    if isinstance(exc, AlreadyExistsError):
        info = error_details_pb2.ResourceInfo(resource_type=exc.kind, description=str(exc))
        return _status(grpc.StatusCode.ALREADY_EXISTS, str(exc), info)
    if isinstance(exc, VersionConflictError):
        # ABORTED: the caller should re-read and retry (AIP-154's etag mismatch).
        error_info = error_details_pb2.ErrorInfo(
            reason="VERSION_CONFLICT",
            domain=DOMAIN,
            metadata={"expected_version": str(exc.expected), "current_version": str(exc.actual)},
        )
        return _status(grpc.StatusCode.ABORTED, str(exc), error_info)
    if isinstance(exc, FailedPrecondition):
        detail = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=exc.type, subject=exc.subject, description=exc.description
                )
            ]
        )
        return _status(grpc.StatusCode.FAILED_PRECONDITION, str(exc), detail)
    if isinstance(exc, UnsupportedPolicyType):
        return _status(grpc.StatusCode.UNIMPLEMENTED, str(exc))
    if isinstance(exc, StoreError):
        return _status(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        # A database refusal no repository translated: name the column or constraint,
        # never Postgres's message (its DETAIL quotes the row).
        diag = exc.diag
        field = diag.column_name or diag.constraint_name or "request"
        return bad_request(
            [FieldViolation(field, safe_reason(exc))], "invalid request: rejected by the database"
        )
    return None
