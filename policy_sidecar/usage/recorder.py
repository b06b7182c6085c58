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
from policy_sidecar.usage.cost import Pricing
from policy_sidecar.usage.metrics import RecorderMetrics, default_metrics
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.sinks import UsageSink
from policy_sidecar.usage.spool import Spool

__all__ = ["BatchingRecorder"]

log = logging.getLogger(__name__)


class BatchingRecorder:
    """``record`` never blocks and never raises; a background task writes batches of up
    to ``max_batch`` records at least every ``max_delay`` seconds.

    Memory is bounded: at most ``max_queue`` records wait in the queue and
    ``max_overflow`` (default: as many) more wait for the spool when the queue is
    full. Without a spool, a full queue drops records and a failing sink is retried
    in memory until ``close``'s grace ends. One per process; asyncio only; the
    spool is owned by this recorder and closed by ``close``.
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
        self._sink = sink
        self._spool = spool
        self._pricing = pricing
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_queue = max_queue
        self._max_overflow = max_queue if max_overflow is None else max_overflow
        self._retries = retries
        self._backoff = backoff or Backoff()
        self._grace = grace_seconds
        self._m = metrics or default_metrics()
        self._m.track(
            queue_depth=lambda: len(self._queue) + len(self._overflow),
            spool_pending=lambda: spool.pending if spool is not None else 0,
        )
        self._queue: deque[UsageRecord] = deque()
        # Records that found the queue full, on their way to the spool.
        self._overflow: deque[UsageRecord] = deque()
        # A batch taken from the queue and not yet stored or spooled.
        self._inflight: list[UsageRecord] = []
        self._arrived = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._expired_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._spill_task: asyncio.Task[None] | None = None
        self._call: asyncio.Future[None] | None = None
        self._down = False
        self._probe_at = 0.0
        self._stopping = False
        self._expired = False
        self._closed = False
        self.written = 0
        self.dropped = 0
        self.retried = 0
        self.spooled = 0
        self.replayed = 0
        self._last_drop_log = -1e9
        self._unlogged_drops = 0

    # -- request path ------------------------------------------------------------------

    def record(self, record: UsageRecord) -> None:
        try:
            if self._closed:
                self._drop([record], "recorder closed")
            elif len(self._queue) < self._max_queue:
                self._queue.append(record)
                if len(self._queue) == 1:
                    self._arrived.set()
                if len(self._queue) >= self._max_batch:
                    self._batch_ready.set()
            else:
                self._overflow_record(record)
        except Exception:
            log.exception("usage record %s could not be queued", record.request_id)

    @property
    def queued(self) -> int:
        return len(self._queue) + len(self._overflow)

    def _overflow_record(self, record: UsageRecord) -> None:
        if self._spool is None:
            self._drop([record], "queue full and no spool")
            return
        if len(self._overflow) >= self._max_overflow:
            self._drop([record], "queue full and the spool cannot keep up")
            return
        self._overflow.append(record)
        if self._spill_task is None or self._spill_task.done():
            self._spill_task = asyncio.get_running_loop().create_task(
                self._spill_overflow(), name="usage-spill"
            )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def close(self, grace_seconds: float | None = None) -> None:
        """Write the queue and the spool to the sink within `grace_seconds` (default: the
        constructor's); then cancel the write in flight and move what is left in memory
        to the spool, for the next start. Records arriving meanwhile are included."""
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
            if self._call is not None:
                self._call.cancel()
            await self._task
        self._task = None
        if self._spill_task is not None:
            await self._spill_task
        self._closed = True
        if self._spool is not None:
            await asyncio.to_thread(self._spool.close)
        left = self._spool.pending if self._spool is not None else 0
        if left:
            log.warning("usage recorder closed with %d records left in the spool", left)

    # -- the writer task -----------------------------------------------------------------

    async def _run(self) -> None:
        while not self._expired:
            if self._down:
                await self._down_step()
                continue
            if self._spool_pending():
                # The spool is older than the queue: it goes first. Meanwhile the queue
                # fills and overflows into the spool, so memory stays bounded.
                await self._replay_one()
                continue
            batch = await self._next_batch(wait=True)
            if batch:
                await self._deliver(batch)
            elif self._stopping:
                if self._spill_task is not None and not self._spill_task.done():
                    await asyncio.wait({self._spill_task})  # then replay what it spooled
                elif not self._spool_pending():
                    break
        await self._spill_leftovers()

    async def _next_batch(self, *, wait: bool) -> list[UsageRecord]:
        if wait and not self._stopping:
            if not self._queue:
                self._arrived.clear()
                await _wait(self._arrived, self._max_delay)
            if 0 < len(self._queue) < self._max_batch and not self._stopping:
                self._batch_ready.clear()
                await _wait(self._batch_ready, self._max_delay)
        n = min(self._max_batch, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]

    async def _deliver(self, batch: list[UsageRecord]) -> None:
        self._inflight = batch
        attempt = 0
        while not await self._write(batch):
            if self._expired:
                return  # `_spill_leftovers` spools the in-flight batch
            attempt += 1
            if self._spool is not None and attempt > self._retries:
                self._go_down()
                await self._spill(batch)
                self._inflight = []
                return
            self._count_retried(len(batch))
            await self._sleep(self._backoff.next())
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
        if self._stopping:
            if self._queue:
                await self._spill(await self._next_batch(wait=False))
            else:
                await self._sleep(self._probe_at - loop.time())
            return
        # Keep memory bounded while the sink is down: the queue moves to disk.
        batch = await self._next_batch(wait=True)
        if batch:
            await self._spill(batch)

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
            self._drop_counted(batch.unreadable)
        if batch.records and not await self._write(list(batch.records)):
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

    async def _write(self, batch: Sequence[UsageRecord]) -> bool:
        """One sink write. False when it failed or was cancelled by `close`."""
        if self._expired:
            return False
        batch = self._priced(batch)
        started = time.perf_counter()
        call = self._call = asyncio.ensure_future(self._sink.write(batch))
        try:
            await asyncio.wait({call})
        finally:
            self._call = None
        if call.cancelled():
            return False
        exc = call.exception()
        if exc is not None:
            log.warning("usage sink write of %d records failed: %r", len(batch), exc)
            return False
        self._m.flush_seconds.observe(time.perf_counter() - started)
        self._m.batch_size.observe(len(batch))
        self.written += len(batch)
        self._m.written.inc(len(batch))
        return True

    # -- spool -----------------------------------------------------------------------------

    async def _spill_overflow(self) -> None:
        # Everything waiting goes in one append (one fsync): the longer a write takes,
        # the bigger the next one, so the spool keeps up with bursts.
        while self._overflow:
            batch = list(self._overflow)
            self._overflow.clear()
            await self._spill(batch)

    async def _spill_leftovers(self) -> None:
        left = self._inflight + list(self._queue) + list(self._overflow)
        self._inflight = []
        self._queue.clear()
        self._overflow.clear()
        if left:
            await self._spill(left)

    async def _spill(self, batch: list[UsageRecord]) -> None:
        if not batch:
            return
        if self._spool is None:
            self._drop(batch, "no spool")
            return
        try:
            await asyncio.to_thread(self._spool.append, self._priced(batch))
        except OSError as exc:
            self._drop(batch, f"spool write failed: {exc!r}")
            return
        self.spooled += len(batch)
        self._m.spooled.inc(len(batch))

    def _priced(self, batch: Sequence[UsageRecord]) -> Sequence[UsageRecord]:
        # Here, on the way out, not in `record`: copying a frozen 28-field record costs
        # as much as building it, and the request path should pay for neither twice.
        if self._pricing is None:
            return batch
        return [self._pricing.apply(r) for r in batch]

    def _spool_pending(self) -> bool:
        return self._spool is not None and self._spool.pending > 0

    # -- helpers ---------------------------------------------------------------------------

    def _go_down(self) -> None:
        if not self._down:
            log.error("usage sink failing: records go to the spool until it recovers")
        self._down = True
        self._probe_at = asyncio.get_running_loop().time() + self._backoff.next()

    async def _sleep(self, seconds: float) -> None:
        await _wait(self._expired_event, max(seconds, 0.0))

    def _count_retried(self, n: int) -> None:
        self.retried += n
        self._m.retried.inc(n)

    def _drop(self, batch: Sequence[UsageRecord], why: str) -> None:
        self._drop_counted(len(batch))
        # Loud, but one line a second at most: a failing disk under load must not
        # turn into a log storm that fills the same disk.
        self._unlogged_drops += len(batch)
        now = time.monotonic()
        if now - self._last_drop_log >= 1.0:
            log.error(
                "USAGE RECORDS LOST: %d (%s); last request id %s",
                self._unlogged_drops,
                why,
                batch[-1].request_id,
            )
            self._last_drop_log = now
            self._unlogged_drops = 0

    def _drop_counted(self, n: int) -> None:
        self.dropped += n
        self._m.dropped.inc(n)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
