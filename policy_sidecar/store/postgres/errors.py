"""Domain errors raised by the Postgres repositories.

The admin API maps them to gRPC status codes: NotFound -> NOT_FOUND,
AlreadyExists -> ALREADY_EXISTS, VersionConflict -> ABORTED (or
FAILED_PRECONDITION), Invalid -> INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

__all__ = [
    "AlreadyExistsError",
    "InUseError",
    "InvalidError",
    "NotFoundError",
    "StoreError",
    "VersionConflictError",
    "safe_reason",
    "translate_errors",
]


class StoreError(Exception):
    """Base class of every domain error of the store."""


class NotFoundError(StoreError):
    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class AlreadyExistsError(StoreError):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind} already exists: {detail}")
        self.kind = kind


class VersionConflictError(StoreError):
    def __init__(self, kind: str, key: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{kind} {key!r} was changed concurrently: expected version {expected}, "
            f"current version is {actual}"
        )
        self.kind = kind
        self.key = key
        self.expected = expected
        self.actual = actual


class InUseError(StoreError):
    """The row cannot be deleted: other rows still refer to it."""

    def __init__(self, kind: str, key: str, reason: str) -> None:
        super().__init__(f"{kind} {key!r} is in use: {reason}")
        self.kind = kind
        self.key = key
        self.reason = reason


class InvalidError(StoreError):
    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(f"invalid {kind}: {field}: {reason}")
        self.kind = kind
        self.field = field
        self.reason = reason


@contextmanager
def translate_errors(kind: str) -> Iterator[None]:
    """Turn integrity and data errors from Postgres into domain errors naming `kind`
    and the column or constraint. Never Postgres's DETAIL text: for CHECK and NOT NULL
    violations it quotes the whole failing row ("Failing row contains (...)"), and for
    unique violations the conflicting values."""
    try:
        yield
    except pg_errors.UniqueViolation as exc:
        detail = f"conflicts with an existing one ({_constraint(exc)})"
        raise AlreadyExistsError(kind, detail) from exc
    except pg_errors.ForeignKeyViolation as exc:
        raise InvalidError(
            kind, _column(exc) or _constraint(exc), "refers to something that does not exist"
        ) from exc
    except (pg_errors.CheckViolation, pg_errors.NotNullViolation) as exc:
        raise InvalidError(kind, _column(exc) or _constraint(exc), safe_reason(exc)) from exc
    except pg_errors.DataError as exc:
        raise InvalidError(kind, _column(exc) or "value", safe_reason(exc)) from exc


def safe_reason(exc: psycopg.Error) -> str:
    """What went wrong, without any value from the request or the row."""
    if isinstance(exc, pg_errors.NotNullViolation):
        return "required"
    if isinstance(exc, pg_errors.CheckViolation):
        return f"not allowed (constraint {_constraint(exc)})"
    if isinstance(exc, pg_errors.StringDataRightTruncation):
        return "too long"
    if isinstance(exc, pg_errors.UntranslatableCharacter | pg_errors.CharacterNotInRepertoire):
        return "contains a character that cannot be stored (e.g. NUL)"
    if isinstance(exc, pg_errors.NumericValueOutOfRange):
        return "out of range"
    return "not a valid value"


def _column(exc: psycopg.Error) -> str | None:
    return exc.diag.column_name


def _constraint(exc: psycopg.Error) -> str:
    return exc.diag.constraint_name or "value"
