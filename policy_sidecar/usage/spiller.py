"""Moving records from memory to the spool, and accounting for every one that is lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from policy_sidecar.usage.metrics import RecorderMetrics
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.spool import Spool

__all__ = ["Spiller"]

log = logging.getLogger("policy_sidecar.usage.recorder")

Pricer = Callable[[Sequence[UsageRecord]], Sequence[UsageRecord]]


class Spiller:
    """The recorder's way to disk. `overflow` takes records the full queue refused and
    writes them from a task of its own (one append, one fsync, per burst); `spill`
    writes a batch now. A record is dropped only when it cannot reach the disk: no
    spool, the spool's write failed, or the overflow itself is full. Every drop is
    counted and logged (at most one line a second). One per recorder; asyncio only.
    """

    def __init__(
        self,
        spool: Spool | None,
        metrics: RecorderMetrics,
        *,
        max_overflow: int,
        price: Pricer,
        on_spooled: Callable[[], object] = lambda: None,
    ) -> None:
        self.spool = spool
        self._m = metrics
        self._max_overflow = max_overflow
        self._price = price
        # Wakes the writer, which may be idle while the spool now has records to replay.
        self._on_spooled = on_spooled
        self.waiting: deque[UsageRecord] = deque()
        self._task: asyncio.Task[None] | None = None
        self.spooled = 0
        self.dropped = 0
        self.rejected = 0
        self._last_drop_log = -1e9
        self._unlogged_drops = 0

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    def overflow(self, record: UsageRecord) -> None:
        if self.spool is None:
            self.drop([record], "queue full and no spool")
        elif len(self.waiting) >= self._max_overflow:
            self.drop([record], "queue full and the spool cannot keep up")
        else:
            self.waiting.append(record)
            if not self.busy:
                self._task = asyncio.get_running_loop().create_task(
                    self._drain(), name="usage-spill"
                )

    async def idle(self) -> None:
        """Return once the overflow written so far is on disk."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _drain(self) -> None:
        # Everything waiting goes in one append: the longer a write takes, the bigger
        # the next one, so the spool keeps up with bursts.
        while self.waiting:
            batch = list(self.waiting)
            self.waiting.clear()
            await self.spill(batch)

    async def spill(self, batch: Sequence[UsageRecord]) -> None:
        if not batch:
            return
        if self.spool is None:
            self.drop(batch, "no spool")
            return
        try:
            await asyncio.to_thread(self.spool.append, self._price(batch))
        except Exception as exc:
            self.drop(batch, f"spool write failed: {exc!r}")
            return
        self.spooled += len(batch)
        self._m.spooled.inc(len(batch))
        self._on_spooled()

    async def reject(self, record: UsageRecord, reason: BaseException) -> None:
        """The sink refuses `record` for good: keep it aside (never replayed) and say so."""
        self.rejected += 1
        self._m.rejected.inc()
        log.error(
            "usage record %s rejected by the sink: %s", record.request_id[:128], _reason(reason)
        )
        if self.spool is None:
            self.drop([record], "rejected and no spool to keep it")
            return
        try:
            await asyncio.to_thread(self.spool.reject, record, _reason(reason))
        except Exception as exc:
            self.drop([record], f"rejected, and the spool write failed: {exc!r}")

    def drop(self, batch: Sequence[UsageRecord], why: str) -> None:
        self.count_dropped(len(batch))
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

    def count_dropped(self, n: int) -> None:
        self.dropped += n
        self._m.dropped.inc(n)


def _reason(exc: BaseException) -> str:
    # The sink's own error, plus its cause (the database's message) when it wraps one.
    cause = exc.__cause__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause) not in str(exc):
        text += f" (from {type(cause).__name__}: {cause})"
    return text[:1000]
