"""One batch at a time into the sink: outcome, accounting, records at fault set aside."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Literal

from policy_sidecar.usage.metrics import RecorderMetrics
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.sinks import RejectedBatchError, UsageSink
from policy_sidecar.usage.spiller import Pricer, Spiller

__all__ = ["SinkWriter"]

log = logging.getLogger("policy_sidecar.usage.recorder")

_Outcome = Literal["stored", "failed", "rejected"]


class SinkWriter:
    """Writes batches to the sink, one at a time, priced on the way. `abandon()` (the
    grace period ran out) cancels the write in flight and fails every later one.
    One per recorder; asyncio only."""

    def __init__(
        self, sink: UsageSink, metrics: RecorderMetrics, spiller: Spiller, price: Pricer
    ) -> None:
        self._sink = sink
        self._m = metrics
        self._spiller = spiller
        self._price = price
        self._call: asyncio.Future[None] | None = None
        self._abandoned = False
        self.written = 0

    def abandon(self) -> None:
        self._abandoned = True
        if self._call is not None:
            # For Postgres the transaction rolls back; had it committed, the batch is
            # replayed from the spool later and the idempotent insert ignores it.
            self._call.cancel()

    async def store(self, batch: Sequence[UsageRecord]) -> bool:
        """Store `batch`; True when every record is stored or, refused by the sink for
        good, set aside. A rejected batch is halved until the records at fault are
        found (the halves already stored are harmless to resend: idempotent sinks)."""
        outcome, error = await self._write(batch)
        if outcome != "rejected":
            return outcome == "stored"
        if len(batch) == 1:
            assert error is not None
            await self._spiller.reject(batch[0], error)
            return True
        mid = len(batch) // 2
        return await self.store(batch[:mid]) and await self.store(batch[mid:])

    async def _write(self, batch: Sequence[UsageRecord]) -> tuple[_Outcome, BaseException | None]:
        if not batch:
            return "stored", None
        if self._abandoned:
            return "failed", None
        batch = self._price(batch)
        started = time.perf_counter()
        call = self._call = asyncio.ensure_future(self._sink.write(batch))
        try:
            await asyncio.wait({call})
        finally:
            self._call = None
        if call.cancelled():
            return "failed", None
        exc = call.exception()
        if isinstance(exc, RejectedBatchError):
            return "rejected", exc
        if exc is not None:
            log.warning("usage sink write of %d records failed: %r", len(batch), exc)
            return "failed", exc
        self._m.flush_seconds.observe(time.perf_counter() - started)
        self._m.batch_size.observe(len(batch))
        self.written += len(batch)
        self._m.written.inc(len(batch))
        return "stored", None

    @property
    def in_flight(self) -> bool:
        return self._call is not None
