"""The worker's idle moment, for the access log reader's work (docs/usage-recording.md).

The reader (`usage.tailer.FileTailer`) runs on the event loop that answers Envoy's
ext_proc messages, and settling a line costs ~0.2-0.3 ms of it. At one request at a time
Envoy writes request N's line just as the client sends request N+1, so reading at once
delays N+1's headers message (BENCHMARKS.md, "The reader in the idle slot"). Right after
the worker answers a request's last message the request is on its way to the provider,
and at that load nothing new arrives until it is back: the request path calls
`IdleSlot.signal` there, and the reader, with lines ready, waits for that signal or a
short fallback timer, whichever comes first (so idle workers and streams are not held).
"""

from __future__ import annotations

import asyncio

__all__ = ["IdleSlot"]


class IdleSlot:
    """One per worker; one waiter (the reader) at a time. `signal` costs an attribute
    test when nobody waits: it is on every request's path."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    @property
    def waiting(self) -> bool:
        return self._waiter is not None

    def signal(self) -> None:
        """The request path answered a request's last message: wake the waiter."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def wake_on(self, waiter: asyncio.Future[None]) -> None:
        """Completes ``waiter`` at the next `signal` (until ``forget``)."""
        self._waiter = waiter

    def forget(self) -> None:
        self._waiter = None
