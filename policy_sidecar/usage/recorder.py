"""The asynchronous usage recorder: the request path enqueues, a task writes batches."""

from __future__ import annotations

import asyncio
import logging

from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.sinks import UsageSink

log = logging.getLogger(__name__)


class BatchingRecorder:
    """``record`` never blocks; a background task writes batches of up to ``max_batch``
    records at least every ``max_delay`` seconds. One per process; asyncio only."""

    def __init__(
        self,
        sink: UsageSink,
        *,
        max_batch: int = 500,
        max_delay: float = 0.2,
        max_queue: int = 100_000,
    ) -> None:
        self._sink = sink
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._queue: asyncio.Queue[UsageRecord] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.written = 0
        self.dropped = 0

    def record(self, record: UsageRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("usage queue full: record %s dropped", record.request_id)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-recorder")

    async def close(self) -> None:
        """Write everything queued, then stop. Records arriving meanwhile are written too."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        while not self._queue.empty():
            await self._write(self._drain(self._max_batch))

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        # Never cancelled: a cancelled write could leave a batch half-written.
        while not (self._stop.is_set() and self._queue.empty()):
            batch = await self._next_batch()
            if batch:
                await self._write(batch)

    async def _next_batch(self) -> list[UsageRecord]:
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(self._queue.get(), self._max_delay)
        except TimeoutError:
            return []
        batch = [first]
        deadline = loop.time() + self._max_delay
        while len(batch) < self._max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            timeout = deadline - loop.time()
            if timeout <= 0 or self._stop.is_set():
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), timeout))
            except TimeoutError:
                break
        return batch

    def _drain(self, limit: int) -> list[UsageRecord]:
        batch: list[UsageRecord] = []
        while len(batch) < limit and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _write(self, batch: list[UsageRecord]) -> None:
        delay = 0.1
        while True:
            try:
                await self._sink.write(batch)
            except Exception:
                log.exception("usage sink failed; retrying batch of %d in %.1fs", len(batch), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.written += len(batch)
            return
