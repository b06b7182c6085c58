"""Where a tailer keeps its place in the file it follows: one small file, rewritten in place.

Saved once per batch of lines, on the event loop: one ``pwrite`` of a fixed-size record
(a few µs). The file used to be replaced whole, written and fsynced in a thread: the
thread hand-offs and the ``fsync`` cost more CPU per batch than everything else the
access log reader does for a line (BENCHMARKS.md, "Sidecar CPU per request (perfcpu)").

What that changes, and what it does not:

* a write is in the page cache once it returns, so a sidecar that crashes or is killed
  leaves its cursor behind exactly as a replaced file did: after a restart the tailer
  hands over again at most the batch that was stored and not yet past the cursor;
* the flush to disk (``fdatasync``, in a thread) happens at most every
  ``sync_seconds`` (1 s) and when the tailer stops: a machine crash may take the
  cursor back by that long — lines handed over again, never skipped (Envoy's access
  log itself is not flushed more often than that either);
* the record is padded to a fixed size and never crosses a disk sector, so a rewrite
  never leaves the tail of a longer one behind, nor half of itself. A file of the
  older format (shorter) is read the same way and overwritten by the first save.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CURSOR_BYTES", "Cursor", "CursorFile"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Cursor:
    inode: int
    offset: int


# JSON padded to this size (two 20-digit numbers fit), well inside one disk sector.
CURSOR_BYTES = 96


class CursorFile:
    """Where a tailer's cursor is saved: one open file rewritten in place (``pwrite``).

    Not fsynced per save: a write survives the process at once; ``sync_if_due`` flushes
    it to disk (in a thread) when ``sync_seconds`` have passed since the last flush and
    it changed, and ``close`` flushes what is left. One per tailer; asyncio only.
    """

    def __init__(self, path: Path, *, sync_seconds: float) -> None:
        self.path = path
        self._sync_seconds = sync_seconds
        self._fd: int | None = None
        self._dirty = False
        self._synced_at = 0.0

    def save(self, cursor: Cursor) -> None:
        record = b'{"inode": %d, "offset": %d}' % (cursor.inode, cursor.offset)
        data = record.ljust(CURSOR_BYTES - 1) + b"\n"
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
            # A file written by an older version (replaced whole each time) is shorter:
            # the first write covers it, then the size is fixed for good.
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
            self._fd = fd
        else:
            os.pwrite(self._fd, data, 0)
        self._dirty = True

    async def sync_if_due(self) -> None:
        if not self._dirty or self._fd is None:
            return
        now = time.monotonic()
        if now - self._synced_at < self._sync_seconds:
            return
        self._synced_at = now
        self._dirty = False
        try:
            await asyncio.to_thread(os.fdatasync, self._fd)
        except OSError as exc:
            self._dirty = True
            log.warning("access log cursor %s: flush failed: %s", self.path, exc)

    async def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._dirty:
                await asyncio.to_thread(os.fdatasync, fd)
        except OSError as exc:
            log.warning("access log cursor %s: flush failed: %s", self.path, exc)
        finally:
            os.close(fd)
            self._dirty = False
