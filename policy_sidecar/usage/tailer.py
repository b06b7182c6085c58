"""Follows a file that another process appends lines to, from a durable cursor.

Envoy appends one access log line per request (`envoy.access_log`); `FileTailer` hands
complete lines, in order and in batches, to ``consume`` and moves its cursor past them
only once ``consume`` says they are safe (stored or spooled), so a restart resumes
exactly there: a line is handed over at least once, and never skipped.

The cursor (`usage.cursor`: ``{"inode": N, "offset": B}``) is rewritten in place once
per batch, on the event loop, and flushed to disk at most every ``sync_seconds``.
After handing a batch over the tailer waits a poll interval before reading again, so
the lines of that interval come as one batch (one cursor write, one sink append).
When there was nothing to read it sleeps until a file of the log's directory changes
(inotify, `usage.file_events`), or ``idle_seconds`` at most; without inotify it polls
every poll interval.

Rotation is followed: when the path names a new file, the old one is
read to its end first (a rotated ``<name>.1`` with the cursor's inode is found again
after a restart); a file cut shorter than the cursor (truncated) is read from its start.
A line longer than `max_line` is skipped and counted, never buffered.

With ``rotate_bytes`` and ``reopen`` the tailer also bounds the file: once it has read
past ``rotate_bytes`` and is at the end, it renames the file to ``<name>.1`` and calls
``reopen`` (Envoy's ``POST /reopen_logs``); the writer keeps appending to the renamed
file until it reopens, the tailer reads that file to its end, moves to the new one and
deletes the old. A ``<name>.1`` the cursor is not in is fully read and is deleted
before the next rotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from policy_sidecar.usage.cursor import Cursor, CursorFile
from policy_sidecar.usage.file_events import DirectoryEvents, open_directory_events

__all__ = ["Cursor", "FileTailer"]

log = logging.getLogger(__name__)

Consume = Callable[[Sequence[bytes]], Awaitable[bool]]
Reopen = Callable[[], Awaitable[None]]


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


class FileTailer:
    """One per followed file; asyncio; ``run`` until ``stop``."""

    def __init__(
        self,
        path: str | Path,
        cursor_path: str | Path,
        consume: Consume,
        *,
        poll_seconds: float = 0.01,
        idle_seconds: float = 0.5,
        watch: bool = True,
        sync_seconds: float = 1.0,
        read_bytes: int = 1024 * 1024,
        max_line: int = 256 * 1024,
        retry_seconds: float = 0.5,
        on_skipped: Callable[[str], None] = lambda reason: None,
        rotate_bytes: int | None = None,
        reopen: Reopen | None = None,
    ) -> None:
        self.path = Path(path)
        self.cursor_path = Path(cursor_path)
        self._consume = consume
        self._poll = poll_seconds
        self._idle = idle_seconds
        self._watch = watch
        self._cursor = CursorFile(self.cursor_path, sync_seconds=sync_seconds)
        self._read_bytes = max(read_bytes, max_line + 1)
        self._max_line = max_line
        self._retry = retry_seconds
        self._on_skipped = on_skipped
        self._rotate_bytes = rotate_bytes if reopen is not None else None
        self._reopen = reopen
        # Renamed, and the writer asked to reopen (once per rotation).
        self._reopen_asked = False
        self._stopping = asyncio.Event()
        self._waiter: asyncio.Future[None] | None = None  # the sleep `stop` cuts short
        self._fd: int | None = None
        self._inode = 0
        self._offset = 0
        self._skipping = False  # inside an over-long line
        self.lines = 0  # lines handed over since start

    def stop(self) -> None:
        """``run`` returns after the batch in hand (its cursor saved, or not handed)."""
        self._stopping.set()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def run(self) -> None:
        events = open_directory_events(self.path.parent) if self._watch else None
        try:
            self._resume(self._load_cursor())
            while not self._stopping.is_set():
                if events is not None:
                    events.drain()  # before reading: a write after this wakes the wait
                before = (self._inode, self._offset)
                if not await self._step():
                    if events is not None and (self._inode, self._offset) == before:
                        # Nothing read: sleep until Envoy writes (or a slow fallback).
                        await self._sleep(self._idle, events)
                    else:
                        # After a batch: the lines of the next poll interval come as one
                        # batch (one cursor write, one sink append), not one by one.
                        await self._sleep(self._poll)
                await self._cursor.sync_if_due()
        finally:
            self._close()
            if events is not None:
                events.close()
            await self._cursor.close()

    # -- one step ------------------------------------------------------------------------

    async def _step(self) -> bool:
        """Reads and hands over one batch; True when there may be more to read at once
        (the read was full, or the file changed under it)."""
        if self._fd is None and not self._open_current(0):
            return False
        assert self._fd is not None
        data = os.pread(self._fd, self._read_bytes, self._offset)
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) > self._max_line:
                # No line break in a whole read: skip what we have, up to the next one.
                self._skipping = True
                self._offset += len(data)
                self._save_cursor()
                return True
            if await self._follow_rotation(len(data)):
                return True
            if not data:
                await self._maybe_rotate()
            return False
        lines = data[:end].split(b"\n")[:-1]
        if self._skipping:
            lines.pop(0)  # the rest of the over-long line
            self._skipping = False
            self._skip("line too long")
        kept = []
        for line in lines:
            if len(line) > self._max_line:
                self._skip("line too long")
            elif line.strip():
                kept.append(line)
        while not await self._consume(kept):
            if self._stopping.is_set():
                return True  # not handed over: read again after the restart
            await self._sleep(self._retry)
        self.lines += len(kept)
        self._offset += end
        self._save_cursor()
        return len(data) == self._read_bytes

    def _skip(self, reason: str) -> None:
        log.warning("access log %s: a line skipped (%s)", self.path, reason)
        self._on_skipped(reason)

    async def _follow_rotation(self, pending: int) -> bool:
        """At the end of the file in hand: switch to a new file at the path, or restart a
        truncated one. True when something changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        if st.st_ino != self._inode:
            if pending:
                return False  # the old file's last line is still being written
            # The old file was rotated away. Envoy flushes it before it opens the new
            # one, so one more read of the old file (in `_step`) saw its last lines.
            data = os.pread(self._fd, 1, self._offset) if self._fd is not None else b""
            if data:
                return True
            log.info("access log %s: following the new file", self.path)
            old = self._inode
            self._close()
            self._reopen_asked = False
            if not self._open_current(0):
                return False
            self._save_cursor()
            # Read to its end and the cursor is past it: the rotated file can go.
            with contextlib.suppress(OSError):
                if os.stat(rotated(self.path)).st_ino == old:
                    os.unlink(rotated(self.path))
            return True
        if st.st_size < self._offset:
            log.warning(
                "access log %s: truncated below the cursor (%d < %d); reading from its start",
                self.path,
                st.st_size,
                self._offset,
            )
            self._offset = 0
            self._skipping = False
            return True
        return False

    async def _maybe_rotate(self) -> None:
        """At the end of a file past ``rotate_bytes``: rename it and ask for a reopen."""
        if self._rotate_bytes is None or self._reopen is None:
            return
        if self._offset < self._rotate_bytes:
            return
        try:
            live = os.stat(self.path).st_ino
        except FileNotFoundError:
            live = None
        if live == self._inode:
            # At the end of the live file: any older rotated file was read to its end.
            old = rotated(self.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)
            try:
                os.rename(self.path, old)
            except OSError as exc:
                log.warning("access log %s: cannot rotate: %s", self.path, exc)
                return
            self._reopen_asked = False
            log.info("access log %s: rotated at %d bytes", self.path, self._offset)
        if self._reopen_asked:
            return
        try:
            await self._reopen()
            self._reopen_asked = True
        except Exception as exc:
            # Asked again at the next idle poll; lines keep going to the renamed file.
            log.warning("access log %s: reopen failed: %r", self.path, exc)

    # -- files and cursor ------------------------------------------------------------------

    def _resume(self, cursor: Cursor | None) -> None:
        if cursor is None:
            self._open_current(0)
            return
        old = rotated(self.path)
        for candidate in (self.path, old):
            try:
                fd = os.open(candidate, os.O_RDONLY)
            except FileNotFoundError:
                continue
            if os.fstat(fd).st_ino == cursor.inode:
                self._fd, self._inode = fd, cursor.inode
                self._offset = min(cursor.offset, os.fstat(fd).st_size)
                return
            os.close(fd)
        log.warning(
            "access log %s: the file of the saved cursor is gone; reading the current one"
            " from its start",
            self.path,
        )
        self._open_current(0)

    def _open_current(self, offset: int) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        self._fd, self._inode, self._offset = fd, os.fstat(fd).st_ino, offset
        self._skipping = False
        return True

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _load_cursor(self) -> Cursor | None:
        try:
            raw = json.loads(self.cursor_path.read_text())
            return Cursor(int(raw["inode"]), int(raw["offset"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.error("access log cursor %s is unreadable; starting over", self.cursor_path)
            return None

    def _save_cursor(self) -> None:
        self._cursor.save(Cursor(self._inode, self._offset))

    async def _sleep(self, seconds: float, events: DirectoryEvents | None = None) -> None:
        """Sleeps ``seconds``, or until `stop` (or, with ``events``, until a file of the
        directory changes). A plain timer and future: the timeout machinery (a
        cancellation and two exceptions) cost more than the poll itself."""
        if self._stopping.is_set():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(seconds, _wake, waiter)
        if events is not None:
            events.wake_on(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if events is not None:
                events.forget()
            self._waiter = None


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
