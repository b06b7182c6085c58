"""The production sink: usage records into Postgres through `UsageRepository`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import psycopg

from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.sinks import RejectedBatchError

__all__ = ["PostgresUsageSink"]


class _BatchInserter(Protocol):
    async def insert_batch(self, records: Sequence[UsageRecord]) -> int: ...


class PostgresUsageSink:
    """Writes each batch with `UsageRepository.insert_batch`: binary COPY, insert
    idempotent on (started_at, request_id) and rollups, in one transaction. A batch
    may therefore be retried or replayed any number of times.

    Data errors (a value out of range, a violated constraint, a naive time) raise
    `RejectedBatchError`; everything else (connection, timeout) is worth a retry.
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
        except (psycopg.DataError, psycopg.IntegrityError, InvalidError) as exc:
            # Bad values (out of range, constraint, naive time): no retry will help.
            raise RejectedBatchError(str(exc)) from exc
        self.inserted += inserted
        self.duplicates += len(batch) - inserted
