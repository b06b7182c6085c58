"""The local spool: records that could not go to the sink yet, on disk, in order.

Layout of the spool directory (one per recorder):

    LOCK                  exclusive flock while a recorder owns the directory
    cursor                {"segment": N, "offset": B}: everything before it is replayed
    000000000001.jsonl    segments of JSON lines (`UsageRecord.to_json_dict`), append-only
    rejected.jsonl        records the sink refused for good (bad data); never replayed

Appends go to the newest segment, one write and one fsync per batch; a segment is
closed at `segment_bytes` and a new one started (the directory is fsynced when a
file is created). Replay reads from the cursor in file order and moves the cursor
only after the sink has stored the batch (`commit`), so a crash between the two
replays that batch again; the sinks are idempotent on request id. Fully replayed
segments are deleted. A torn last line (crash mid-write) is cut off at open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from policy_sidecar.usage.record import UsageRecord

__all__ = ["Spool", "SpoolBatch", "SpoolLockedError", "SpoolPosition"]

log = logging.getLogger(__name__)

_SUFFIX = ".jsonl"
REJECTED = "rejected.jsonl"  # not a number: never taken for a segment


class SpoolLockedError(RuntimeError):
    """Another recorder (process) owns this spool directory."""


@dataclass(frozen=True, slots=True, order=True)
class SpoolPosition:
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    records: tuple[UsageRecord, ...]
    # Where the cursor goes once the batch is stored.
    end: SpoolPosition
    # Lines that could not be parsed back into records (counted as dropped).
    unreadable: int

    @property
    def lines(self) -> int:
        return len(self.records) + self.unreadable


def encode(records: Sequence[UsageRecord]) -> bytes:
    return "".join(
        json.dumps(r.to_json_dict(), separators=(",", ":")) + "\n" for r in records
    ).encode()


class Spool:
    """Append-only, crash-safe FIFO of usage records in a directory.

    Methods block on disk I/O (call them with `asyncio.to_thread`) and are
    thread-safe. Opening takes an exclusive lock on the directory: one recorder per
    spool, `SpoolLockedError` for a second one. `close` releases it.
    """

    def __init__(self, directory: str | Path, *, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise SpoolLockedError(f"spool {self.directory} is in use by another process") from exc
        # Bytes of each segment that are complete lines and fsynced: all a read may see.
        self._sizes: dict[int, int] = {}
        self._active: int | None = None
        self._active_fd: int | None = None
        self._closed = False
        self._cursor = self._load_cursor()
        self._pending = self._scan()

    @property
    def pending(self) -> int:
        """Lines appended and not yet committed."""
        return self._pending

    def append(self, records: Sequence[UsageRecord]) -> None:
        """Write `records` at the end, durably (fsync) before returning. On OSError
        nothing of the batch is visible to `read`; the caller decides what is lost."""
        if not records:
            return
        data = encode(records)
        with self._lock:
            self._check_open()
            fd, seq = self._writable()
            size = self._sizes[seq]
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                # Cut the partial batch off so the next append does not glue onto it;
                # if even that fails, abandon the segment (reads stop at `size`).
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                self._close_active()
                raise
            self._sizes[seq] = size + len(data)
            self._pending += len(records)
            if self._sizes[seq] >= self._segment_bytes:
                self._close_active()

    def read(self, max_records: int) -> SpoolBatch | None:
        """Up to `max_records` from the cursor, oldest first; None when nothing is pending.
        Does not move the cursor: `commit(batch.end, batch.lines)` does."""
        with self._lock:
            self._check_open()
            for seq in sorted(s for s in self._sizes if s >= self._cursor.segment):
                size = self._sizes[seq]
                offset = self._cursor.offset if seq == self._cursor.segment else 0
                if offset < size:
                    return self._read_segment(seq, offset, size, max_records)
            self._pending = 0  # nothing left to read, whatever the count said
            return None

    def commit(self, end: SpoolPosition, lines: int) -> None:
        """Everything before `end` is stored: persist the cursor, delete spent segments."""
        with self._lock:
            self._check_open()
            tmp = self.directory / "cursor.tmp"
            tmp.write_text(json.dumps({"segment": end.segment, "offset": end.offset}))
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.directory / "cursor")
            self._fsync_dir()
            self._cursor = end
            self._pending = max(self._pending - lines, 0)
            for seq in [s for s in self._sizes if s < end.segment and s != self._active]:
                with contextlib.suppress(FileNotFoundError):
                    self._path(seq).unlink()
                del self._sizes[seq]

    def reject(self, record: UsageRecord, reason: str = "") -> None:
        """Keep a record the sink refuses for good in `rejected.jsonl` (never replayed;
        for an operator to inspect, fix and feed back). The line is the record's JSON
        plus ``rejected_reason`` (at most 1,000 characters), which
        `UsageRecord.from_json_dict` ignores."""
        line = record.to_json_dict()
        line["rejected_reason"] = reason[:1000]
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode("utf-8", "replace")
        with self._lock:
            self._check_open()
            fd = os.open(self.directory / REJECTED, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_active()
            os.close(self._lock_fd)

    # -- internals -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(f"spool {self.directory} is closed")

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}{_SUFFIX}"

    def _writable(self) -> tuple[int, int]:
        if self._active_fd is None or self._active is None:
            seq = max(self._sizes, default=self._cursor.segment) + 1
            fd = os.open(self._path(seq), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._fsync_dir()
            self._active, self._active_fd = seq, fd
            self._sizes[seq] = 0
        return self._active_fd, self._active

    def _close_active(self) -> None:
        if self._active_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._active_fd)
        self._active = self._active_fd = None

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load_cursor(self) -> SpoolPosition:
        try:
            data = json.loads((self.directory / "cursor").read_text())
            return SpoolPosition(int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            return SpoolPosition(0, 0)
        except (ValueError, KeyError, TypeError):
            # Replaying from the oldest segment is safe (idempotent sinks); losing is not.
            log.error("usage spool %s: unreadable cursor, replaying every segment", self.directory)
            return SpoolPosition(0, 0)

    def _scan(self) -> int:
        """Find segments, cut torn tails, count the lines still to replay."""
        pending = 0
        for path in sorted(self.directory.glob("*" + _SUFFIX)):
            try:
                seq = int(path.name.removesuffix(_SUFFIX))
            except ValueError:
                continue
            if seq < self._cursor.segment:
                path.unlink()
                continue
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                log.warning(
                    "usage spool %s: cutting a torn last line (%d bytes)", path, len(data) - end
                )
                os.truncate(path, end)
            self._sizes[seq] = end
            start = min(self._cursor.offset, end) if seq == self._cursor.segment else 0
            pending += data.count(b"\n", start, end)
        return pending

    def _read_segment(self, seq: int, offset: int, size: int, limit: int) -> SpoolBatch:
        records: list[UsageRecord] = []
        unreadable = 0
        with open(self._path(seq), "rb") as f:
            f.seek(offset)
            pos = offset
            while pos < size and len(records) + unreadable < limit:
                line = f.readline(size - pos)
                pos += len(line)
                try:
                    records.append(UsageRecord.from_json_dict(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    unreadable += 1
                    log.error("usage spool %s@%d: unreadable line dropped", self._path(seq), pos)
        return SpoolBatch(tuple(records), SpoolPosition(seq, pos), unreadable)
