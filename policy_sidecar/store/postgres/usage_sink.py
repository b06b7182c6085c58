"""The production sink: usage records into Postgres through `UsageRepository`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import psycopg

from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.sinks import RejectedBatchError

__all__ = ["PostgresUsageSink", "is_transient"]

# SQLSTATE classes that say nothing about the rows: connection exception, transaction
# rollback (serialization, deadlock), syntax or access (a migration not applied yet,
# a missing grant: every record would fail), insufficient resources, object not in
# prerequisite state (lock not available), operator intervention, system and
# internal errors. Quarantining records for these would lose good data.
_TRANSIENT_CLASSES = frozenset({"08", "40", "42", "53", "55", "57", "58", "XX"})


class _BatchInserter(Protocol):
    async def insert_batch(self, records: Sequence[UsageRecord]) -> int: ...


class PostgresUsageSink:
    """Writes each batch with `UsageRepository.insert_batch`: binary COPY, insert
    idempotent on (started_at, request_id) and rollups, in one transaction. A batch
    may therefore be retried or replayed any number of times.

    An error the records may cause raises `RejectedBatchError`, so the recorder
    isolates the record at fault instead of retrying the batch for ever: any database
    error (bad value, constraint, an index row too big, ...) and any error encoding a
    value (OverflowError, ValueError, TypeError). Only what says nothing about the
    records is worth a retry (`is_transient`): no connection, a timeout, the server
    shutting down, out of resources, a conflict, a schema not migrated yet.
    `timeout` bounds one write (including waiting for a pool connection), so a
    database that hangs rather than refuses is noticed and the recorder spools.
    """

    def __init__(self, repository: _BatchInserter, *, timeout: float = 30.0) -> None:
        self._repository = repository
        self._timeout = timeout
        self.inserted = 0
        self.duplicates = 0

    async def write(self, batch: Sequence[UsageRecord]) -> None:
        if not batch:
            return
        try:
            async with asyncio.timeout(self._timeout):
                inserted = await self._repository.insert_batch(batch)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise RejectedBatchError(f"{type(exc).__name__}: {exc}") from exc
        self.inserted += inserted
        self.duplicates += len(batch) - inserted


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same records later may succeed (see `PostgresUsageSink`)."""
    if isinstance(exc, InvalidError):
        return False  # our own validation of a record (a naive time)
    if isinstance(exc, OSError | TimeoutError | psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        # No SQLSTATE: the client's own failure (connection lost, pool timeout).
        return state is None or state[:2] in _TRANSIENT_CLASSES
    return False
