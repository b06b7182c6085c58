"""Where usage records go: the sink protocol and the standalone JSON-lines file."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from policy_sidecar.usage.record import UsageRecord


class UsageSink(Protocol):
    """Stores a batch of records; raises on failure so the caller can retry the batch,
    `RejectedBatchError` when retrying cannot help. Must be idempotent on request id:
    a batch may be retried, or replayed from the spool, after it was stored."""

    async def write(self, batch: Sequence[UsageRecord]) -> None: ...


class JsonlFileSink:
    """Appends one JSON object per line. Each batch is one ``write`` on an O_APPEND file,
    so several worker processes can share the file without interleaving lines.

    The append runs on the event loop: a few KB into the page cache take microseconds,
    where handing them to a thread cost ~100 µs of CPU per batch (the wake-ups and the
    GIL going back and forth). Not fsynced (the file is a standalone mode's log)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def write(self, batch: Sequence[UsageRecord]) -> None:
        if not batch:
            return
        data = "".join(
            json.dumps(r.to_json_dict(), separators=(",", ":")) + "\n" for r in batch
        ).encode()
        self._append(data)

    def _append(self, data: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)


class RejectedBatchError(Exception):
    """The sink will never store this batch as it is (bad data, not a bad connection).

    The recorder splits the batch to find the records at fault, stores the rest and
    keeps those aside instead of retrying them forever."""
