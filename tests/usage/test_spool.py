"""The spool: FIFO across segments, resumable cursor, crash-tolerant, one owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_sidecar.usage.spool import Spool, SpoolLockedError

from .helpers import rec


def drain(spool: Spool, batch: int) -> list[str]:
    out: list[str] = []
    while (b := spool.read(batch)) is not None:
        out.extend(r.request_id for r in b.records)
        spool.commit(b.end, b.lines)
    return out


@pytest.mark.parametrize("segment_bytes", [200, 4096, 64 * 1024 * 1024])
@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_reads_back_in_order_across_segments(
    tmp_path: Path, segment_bytes: int, batch: int
) -> None:
    spool = Spool(tmp_path, segment_bytes=segment_bytes)
    for start in range(0, 50, 10):
        spool.append([rec(i) for i in range(start, start + 10)])
    assert spool.pending == 50
    assert drain(spool, batch) == [f"r{i}" for i in range(50)]
    assert spool.pending == 0
    spool.close()
    # Spent segments are deleted; at most the last (active) one remains.
    assert len(list(tmp_path.glob("*.jsonl"))) <= 1


def test_cursor_resumes_after_reopen_and_uncommitted_reads_repeat(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=300)
    spool.append([rec(i) for i in range(20)])
    first = spool.read(5)
    assert first is not None
    spool.commit(first.end, first.lines)
    assert spool.read(3) is not None  # read but never committed: a crash before commit
    spool.close()

    again = Spool(tmp_path, segment_bytes=300)
    assert again.pending == 15
    again.append([rec(i) for i in range(20, 25)])
    assert drain(again, 4) == [f"r{i}" for i in range(5, 25)]
    again.close()


def test_torn_last_line_is_cut_at_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([rec(1), rec(2)])
    spool.close()
    (segment,) = tmp_path.glob("*.jsonl")
    with segment.open("ab") as f:
        f.write(b'{"request_id": "r3", "start')  # the crash happened mid-write
    reopened = Spool(tmp_path)
    assert reopened.pending == 2
    assert drain(reopened, 10) == ["r1", "r2"]
    reopened.close()


def test_unreadable_line_is_skipped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([rec(1)])
    spool.close()
    (segment,) = tmp_path.glob("*.jsonl")
    with segment.open("ab") as f:
        f.write(b"not json\n")
    reopened = Spool(tmp_path)
    reopened.append([rec(2)])
    batch = reopened.read(10)
    assert batch is not None
    assert [r.request_id for r in batch.records] == ["r1"]
    assert batch.unreadable == 1
    reopened.commit(batch.end, batch.lines)
    assert drain(reopened, 10) == ["r2"]
    reopened.close()


def test_one_owner_per_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolLockedError):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


def test_closed_spool_refuses_writes(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.close()
    with pytest.raises(OSError, match="closed"):
        spool.append([rec(1)])
