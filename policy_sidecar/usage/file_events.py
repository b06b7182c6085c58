"""Wake-ups when a file in a directory changes (Linux inotify, through libc).

The access log reader used to poll its file every 10 ms: ~100 µs of CPU a wake-up on
a small VM, 10 to 30 ms of CPU a second per idle worker, and about 2 ms of every 200-chunk
stream at 8 concurrent streams (BENCHMARKS.md, "Streams ... (perfstream)"). With a
`DirectoryEvents` it sleeps until Envoy writes (or a file is created, renamed or
deleted there) and polls only as a slow fallback.

No events are lost between a read that found nothing and the wait that follows: the
kernel queues events on the inotify descriptor, `drain` empties it *before* the read,
and `wake_on` completes its future at once when anything was queued since. Where inotify is missing
(not Linux, no libc symbol, the per-user watch limit reached) `open_directory_events`
returns None and the caller keeps polling.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys
from pathlib import Path

__all__ = ["DirectoryEvents", "open_directory_events"]

log = logging.getLogger(__name__)

# <sys/inotify.h>
_IN_MODIFY = 0x002
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_MASK = _IN_MODIFY | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE


class DirectoryEvents:
    """An inotify descriptor watching one directory; asyncio, one waiter at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def drain(self) -> None:
        """Forgets the events queued so far (call before looking at the files)."""
        while True:
            try:
                if not os.read(self._fd, 65536):
                    return
            except BlockingIOError:
                return
            except OSError:
                return

    def wake_on(self, waiter: asyncio.Future[None]) -> None:
        """Completes ``waiter`` when an event is queued (until ``forget``)."""
        loop = asyncio.get_running_loop()

        def ready() -> None:
            if not waiter.done():
                waiter.set_result(None)

        loop.add_reader(self._fd, ready)

    def forget(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def open_directory_events(directory: str | Path) -> DirectoryEvents | None:
    """Watches ``directory`` for files written, created, renamed or deleted; None where
    inotify is not available (the caller polls instead)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        init = libc.inotify_init1
        add_watch = libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    init.argtypes = [ctypes.c_int]
    init.restype = ctypes.c_int
    add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    add_watch.restype = ctypes.c_int
    fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        reason = os.strerror(ctypes.get_errno())
        log.warning("inotify unavailable (%s): polling the access log", reason)
        return None
    if add_watch(fd, os.fsencode(directory), _MASK) < 0:
        log.warning(
            "cannot watch %s (%s): polling the access log",
            directory,
            os.strerror(ctypes.get_errno()),
        )
        os.close(fd)
        return None
    return DirectoryEvents(fd)
