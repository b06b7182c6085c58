"""Free loopback ports for the processes the launcher, the tests and the bench start.

A port found free with ``bind(0)`` comes from the kernel's ephemeral range, the range
every outgoing connection also takes its source port from, and it stays free only
until someone binds it: on a loaded machine another process's connection, another
test's server or this process's next ``bind(0)`` took one between the pick and the
launch ("address in use"), and a client connecting to such a port while its server
restarts can even connect to itself. So ports come from *below* the ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``), each process from a block of its own,
claimed with a lock file that the kernel releases when the process exits (so
concurrent test runs on one machine never hand out the same port), and a process
never hands out the same port twice. Where there is no room below the ephemeral
range, ``bind(0)`` it is, still never twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import IO

__all__ = ["free_port"]

_LOWEST = 10_000  # above the well-known and most registered ports
_BLOCK = 100
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOCK_DIR = Path(tempfile.gettempdir()) / "policy-sidecar-ports"


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Allocator:
    """This process's ports: blocks of ``_BLOCK`` below the ephemeral range."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._pid = -1
        self._reset()

    def _reset(self) -> None:
        self._given: set[int] = set()
        self._lock: IO[bytes] | None = None  # held open: our claim on the block
        self._next = 0
        self._end = 0  # the current block is [_next, _end)
        self._tried: set[int] = set()  # blocks claimed or found taken

    def take(self) -> int:
        with self._mutex:
            if self._pid != os.getpid():  # first use, or a forked child: its own block
                self._reset()
                self._pid = os.getpid()
            while True:
                while self._next < self._end:
                    port = self._next
                    self._next += 1
                    if _bindable(port):
                        self._given.add(port)
                        return port
                if not self._claim_block():
                    return self._ephemeral()

    def _claim_block(self) -> bool:
        high = _ephemeral_low()
        blocks = [b for b in range(_LOWEST, high - _BLOCK + 1, _BLOCK) if b not in self._tried]
        if not blocks:
            return False
        # Concurrent processes start at different blocks, so claims rarely contend.
        first = self._pid % len(blocks)
        if not _LOCK_DIR.is_dir():
            with contextlib.suppress(OSError):
                _LOCK_DIR.mkdir()
                _LOCK_DIR.chmod(0o1777)  # shared by every user's runs, like /tmp
        for start in blocks[first:] + blocks[:first]:
            self._tried.add(start)
            try:
                lock = open(_LOCK_DIR / f"{start}.lock", "ab")  # noqa: SIM115 - held on purpose
            except OSError:
                continue
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            if self._lock is not None:
                self._lock.close()
            self._lock, self._next, self._end = lock, start, start + _BLOCK
            return True
        return False

    def _ephemeral(self) -> int:
        for _ in range(1000):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port
        raise RuntimeError("no free loopback port")


_allocator = _Allocator()


def free_port() -> int:
    """A loopback port nothing listens on now, which this process has not handed out
    before and which concurrent processes using this function do not hand out."""
    return _allocator.take()
