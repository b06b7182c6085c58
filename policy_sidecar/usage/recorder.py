"""The asynchronous usage recorder: the request path enqueues, a task writes batches.

States of the writer task (see docs/usage-recording.md):

* up: while the spool holds records, replay it, oldest first; otherwise take a
  batch from the queue (by size, or after `max_delay`) and write it.
* down (a batch failed `retries` + 1 times): the batch and, every `max_delay`,
  the queue go to the spool; the sink is probed with the oldest spool batch after
  each backoff delay. The first successful probe means up again.
* closing: as above until everything is stored or the grace period ends; then
  the write in flight is cancelled and whatever is in memory goes to the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence

from policy_sidecar.usage.backoff import Backoff
from policy_sidecar.usage.bounds import bound_record
from policy_sidecar.usage.cost import Pricing
from policy_sidecar.usage.metering import metered
from policy_sidecar.usage.metrics import RecorderMetrics, default_metrics
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.sinks import UsageSink
from policy_sidecar.usage.spiller import Spiller
from policy_sidecar.usage.spool import Spool
from policy_sidecar.usage.writer import SinkWriter

__all__ = ["BatchingRecorder"]

log = logging.getLogger(__name__)


class BatchingRecorder:
    """``record`` never blocks and never raises; a background task writes batches of up
    to ``max_batch`` records at least every ``max_delay`` seconds.

    Memory is bounded: at most ``max_queue`` records wait in the queue and
    ``max_overflow`` (default: as many) more wait for the spool when the queue is
    full. Without a spool, a full queue drops records and a failing sink is retried
    in memory until ``close``'s grace ends. Records are priced (``cost_usd``) on the
    way to the sink or spool. One per process; asyncio only; the spool is owned by
    this recorder and closed by ``close``.
    """

    def __init__(
        self,
        sink: UsageSink,
        *,
        spool: Spool | None = None,
        pricing: Pricing | None = None,
        max_batch: int = 500,
        max_delay: float = 0.2,
        max_queue: int = 100_000,
        max_overflow: int | None = None,
        retries: int = 3,
        backoff: Backoff | None = None,
        metrics: RecorderMetrics | None = None,
        grace_seconds: float = 10.0,
    ) -> None:
        self._spool = spool
        self._pricing = pricing
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_queue = max_queue
        self._retries = retries
        self._backoff = backoff or Backoff()
        self._grace = grace_seconds
        self._m = metrics or default_metrics()
        self._arrived = asyncio.Event()
        self._spiller = Spiller(
            spool,
            self._m,
            max_overflow=max_queue if max_overflow is None else max_overflow,
            price=self._priced,
            on_spooled=self._arrived.set,
        )
        self._writer = SinkWriter(sink, self._m, self._spiller, self._priced)
        # `store`'s own writer: the writer task's may be busy with a batch of its own.
        self._direct = SinkWriter(sink, self._m, self._spiller, self._priced)
        self._queue: deque[UsageRecord] = deque()
        self._m.track(
            queue_depth=lambda: self.queued,
            spool_pending=lambda: spool.pending if spool is not None else 0,
        )
        # A batch taken from the queue and not yet stored or spooled.
        self._inflight: list[UsageRecord] = []
        self._batch_ready = asyncio.Event()
        self._expired_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self._probe_at = 0.0
        self._stopping = False
        self._expired = False
        self._closed = False
        self.retried = 0
        self.replayed = 0
        self._last_bounded_log = -1e9
        self._unlogged_bounded = 0

    # -- request path ------------------------------------------------------------------

    def record(self, record: UsageRecord) -> None:
        try:
            record = metered(self._bounded(record))
            if self._closed:
                self._spiller.drop([record], "recorder closed")
            elif len(self._queue) < self._max_queue:
                self._queue.append(record)
                if len(self._queue) == 1:
                    self._arrived.set()
                if len(self._queue) >= self._max_batch:
                    self._batch_ready.set()
            else:
                self._spiller.overflow(record)
        except Exception:
            log.exception("usage record %s could not be queued", record.request_id)

    async def store(self, records: Sequence[UsageRecord]) -> bool:
        """Stores ``records`` durably: in the sink, else appended to the spool (the writer
        task replays it). True once every record is in one or the other, so the caller
        may forget them (the access log reader moves its cursor only then); False when
        neither took them (call again later). Never raises."""
        if self._closed:
            return False
        try:
            batch = [metered(self._bounded(r)) for r in records]
            if not batch:
                return True
            if not self._down and not self._spool_pending() and await self._direct.store(batch):
                return True
            if self._spool is None:
                return False
            await asyncio.to_thread(self._spool.append, self._priced(batch))
        except Exception:
            log.exception("usage records could not be stored nor spooled; kept for a retry")
            return False
        self._spiller.spooled += len(batch)
        self._m.spooled.inc(len(batch))
        self._arrived.set()  # the writer task replays the spool
        return True

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._spiller.waiting)

    @property
    def written(self) -> int:
        return self._writer.written

    @property
    def dropped(self) -> int:
        return self._spiller.dropped

    @property
    def spooled(self) -> int:
        return self._spiller.spooled

    @property
    def rejected(self) -> int:
        return self._spiller.rejected

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def close(self, grace_seconds: float | None = None) -> None:
        """Write the queue and the spool to the sink within `grace_seconds` (default: the
        constructor's); then cancel the write in flight and move what is left in memory
        to the spool, for the next start. Records arriving meanwhile are included;
        records arriving after `close` returns are dropped (counted and logged)."""
        if self._closed:
            return
        grace = self._grace if grace_seconds is None else grace_seconds
        self.start()
        assert self._task is not None
        self._stopping = True
        self._arrived.set()
        self._batch_ready.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._expired = True
            self._expired_event.set()
            self._writer.abandon()
            self._direct.abandon()
            await self._task
        self._task = None
        await self._spiller.idle()
        self._closed = True
        await self._spill_leftovers()  # anything that arrived while the task ended
        if self._spool is not None:
            await asyncio.to_thread(self._spool.close)
            if self._spool.pending:
                log.warning(
                    "usage recorder closed with %d records in the spool %s for the next start",
                    self._spool.pending,
                    self._spool.directory,
                )

    # -- the writer task -----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not self._expired:
                if self._down:
                    await self._down_step()
                elif self._spool_pending():
                    # The spool is older than the queue: it goes first. Meanwhile the
                    # queue fills and overflows into the spool, so memory stays bounded.
                    await self._replay_one()
                elif batch := await self._next_batch(first_wait=None):
                    await self._deliver(batch)
                elif self._stopping:
                    if not self._spiller.busy:
                        break
                    await self._spiller.idle()  # then replay what it spooled
        except Exception:
            log.exception("usage recorder failed; what is in memory goes to the spool")
        await self._spill_leftovers()

    async def _next_batch(self, *, first_wait: float | None) -> list[UsageRecord]:
        """Up to `max_batch` records: waits up to `first_wait` (None: for ever) for a first
        record, then up to `max_delay` for a full batch; never waits once closing."""
        if not self._stopping:
            if not self._queue:
                self._arrived.clear()
                await _wait(self._arrived, first_wait)
            if 0 < len(self._queue) < self._max_batch and not self._stopping:
                self._batch_ready.clear()
                await _wait(self._batch_ready, self._max_delay)
        n = min(self._max_batch, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    async def _deliver(self, batch: list[UsageRecord]) -> None:
        self._inflight = batch
        attempt = 0
        while not await self._writer.store(batch):
            if self._expired:
                return  # `_spill_leftovers` spools the in-flight batch
            attempt += 1
            if self._spool is not None and attempt > self._retries:
                self._go_down()
                await self._spiller.spill(batch)
                self._inflight = []
                return
            self._count_retried(len(batch))
            await _wait(self._expired_event, self._backoff.next())
        self._backoff.reset()
        self._inflight = []

    async def _down_step(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() >= self._probe_at:
            if not self._spool_pending():
                self._down = False  # nothing to probe with: try the queue directly
                return
            await self._replay_one()
            if not self._down:
                return
        until_probe = max(self._probe_at - loop.time(), 0.0)
        if self._stopping:
            if self._queue:
                await self._spiller.spill(await self._next_batch(first_wait=0.0))
            else:
                await _wait(self._expired_event, until_probe)
            return
        # Keep memory bounded while the sink is down: the queue moves to disk.
        await self._spiller.spill(await self._next_batch(first_wait=until_probe))

    async def _replay_one(self) -> None:
        assert self._spool is not None
        try:
            batch = await asyncio.to_thread(self._spool.read, self._max_batch)
        except OSError:
            log.exception("usage spool %s: read failed; will retry", self._spool.directory)
            self._go_down()
            return
        if batch is None:
            return
        if batch.unreadable:
            self._spiller.count_dropped(batch.unreadable)
        # Spooled by an older version, a record may be out of bounds: bounded here (the
        # same record always gets the same replacement id); anything the sink still
        # refuses is quarantined by the writer, so no record can block the replay.
        records = [metered(self._bounded(r, replayed=True)) for r in batch.records]
        if not await self._writer.store(records):
            self._count_retried(len(batch.records))
            self._go_down()
            return
        try:
            await asyncio.to_thread(self._spool.commit, batch.end, batch.lines)
        except OSError:
            # The batch is stored but may be replayed again: the sink is idempotent.
            log.exception("usage spool %s: cursor not saved", self._spool.directory)
        self.replayed += len(batch.records)
        self._m.replayed.inc(len(batch.records))
        self._down = False
        self._backoff.reset()

    # -- helpers ---------------------------------------------------------------------------

    async def _spill_leftovers(self) -> None:
        left = self._inflight + list(self._queue) + list(self._spiller.waiting)
        self._inflight = []
        self._queue.clear()
        self._spiller.waiting.clear()
        await self._spiller.spill(left)

    def _bounded(self, record: UsageRecord, *, replayed: bool = False) -> UsageRecord:
        """`bound_record`, counted (flags set at the edge too, e.g. clamped usage) and
        logged; a replayed record counts only flags it did not carry yet."""
        bounded = bound_record(record)
        if bounded is not record:
            self._log_bounded(bounded)
        if bounded.usage_flags:
            old = set(record.usage_flags) if replayed else set()
            self._m.count_flags(tuple(f for f in bounded.usage_flags if f not in old))
        return bounded

    def _log_bounded(self, record: UsageRecord) -> None:
        # At most one line a second: a client sending bad ids must not flood the log.
        self._unlogged_bounded += 1
        now = time.monotonic()
        if now - self._last_bounded_log >= 1.0:
            log.warning(
                "usage records bounded before queueing: %d (last: %s, flags %s)",
                self._unlogged_bounded,
                record.request_id,
                ",".join(record.usage_flags),
            )
            self._last_bounded_log = now
            self._unlogged_bounded = 0

    def _priced(self, batch: Sequence[UsageRecord]) -> Sequence[UsageRecord]:
        # Here, on the way out, not in `record`: copying a frozen 28-field record costs
        # as much as building it, and the request path should not pay for it.
        if self._pricing is None:
            return batch
        return [self._pricing.apply(r) for r in batch]

    def _spool_pending(self) -> bool:
        return self._spool is not None and self._spool.pending > 0

    def _go_down(self) -> None:
        if not self._down:
            log.error("usage sink failing: records go to the spool until it recovers")
        self._down = True
        self._probe_at = asyncio.get_running_loop().time() + self._backoff.next()

    def _count_retried(self, n: int) -> None:
        self.retried += n
        self._m.retried.inc(n)


async def _wait(event: asyncio.Event, seconds: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
