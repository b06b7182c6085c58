"""Following Envoy's access log: every line handed over once, in order, across restarts,
rotation and truncation; the cursor moves only once a batch is safe."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from policy_sidecar.usage.tailer import FileTailer, rotated

DEADLINE = 30.0


class Sink:
    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.refuse = 0  # refuse this many batches

    async def __call__(self, lines: Sequence[bytes]) -> bool:
        if self.refuse:
            self.refuse -= 1
            return False
        self.lines.extend(lines)
        return True


def append(path: Path, *lines: str) -> None:
    write(path, "".join(line + "\n" for line in lines).encode())


def write(path: Path, data: bytes, mode: str = "ab") -> None:
    with open(path, mode) as f:
        f.write(data)


async def until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def run(tailer: FileTailer) -> asyncio.Task[None]:
    return asyncio.create_task(tailer.run())


async def stop(tailer: FileTailer, task: asyncio.Task[None]) -> None:
    tailer.stop()
    await task


def tailer_for(tmp_path: Path, sink: Sink, **kw: object) -> FileTailer:
    return FileTailer(
        tmp_path / "access.log",
        tmp_path / "cursor",
        sink,
        poll_seconds=0.01,
        retry_seconds=0.01,
        **kw,  # type: ignore[arg-type]
    )


async def test_lines_in_order_and_a_restart_resumes_at_the_cursor(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    tailer = tailer_for(tmp_path, sink)
    task = await run(tailer)
    append(log, "a", "b")
    await until(lambda: sink.lines == [b"a", b"b"])
    # A line without its newline yet is not handed over.
    write(log, b"c-part")
    await asyncio.sleep(0.1)
    assert sink.lines == [b"a", b"b"]
    await stop(tailer, task)
    write(log, b"ial\n")
    append(log, "d")
    again = tailer_for(tmp_path, sink)
    task = await run(again)
    await until(lambda: len(sink.lines) == 4)
    await stop(again, task)
    assert sink.lines == [b"a", b"b", b"c-partial", b"d"]


async def test_a_refused_batch_is_offered_again_and_never_skipped(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    sink.refuse = 3
    tailer = tailer_for(tmp_path, sink)
    task = await run(tailer)
    append(log, "a", "b")
    await until(lambda: sink.lines == [b"a", b"b"])
    await stop(tailer, task)


async def test_stopped_while_refused_the_lines_are_read_after_the_restart(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    sink.refuse = 10**9
    append(log, "a")
    tailer = tailer_for(tmp_path, sink)
    task = await run(tailer)
    await asyncio.sleep(0.1)
    await stop(tailer, task)
    sink.refuse = 0
    again = tailer_for(tmp_path, sink)
    task = await run(again)
    await until(lambda: sink.lines == [b"a"])
    await stop(again, task)


async def test_rotation_is_followed_old_file_first(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    tailer = tailer_for(tmp_path, sink)
    task = await run(tailer)
    append(log, "a")
    await until(lambda: sink.lines == [b"a"])
    await stop(tailer, task)
    # Rotated while the reader was down: the old file's rest, then the new file.
    append(log, "b")
    os.rename(log, rotated(log))
    append(log, "c")
    again = tailer_for(tmp_path, sink)
    task = await run(again)
    await until(lambda: len(sink.lines) == 3)
    # And rotated while it runs.
    append(log, "d")
    await until(lambda: len(sink.lines) == 4)
    os.replace(log, rotated(log))
    append(log, "e")
    await until(lambda: len(sink.lines) == 5)
    await stop(again, task)
    assert sink.lines == [b"a", b"b", b"c", b"d", b"e"]


async def test_a_truncated_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    tailer = tailer_for(tmp_path, sink)
    task = await run(tailer)
    append(log, "aaaaaaaa", "bbbbbbbb")
    await until(lambda: len(sink.lines) == 2)
    write(log, b"c\n", "wb")
    await until(lambda: len(sink.lines) == 3)
    await stop(tailer, task)
    assert sink.lines[-1] == b"c"


async def test_an_over_long_line_is_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    skipped: list[str] = []
    tailer = tailer_for(tmp_path, sink, max_line=100, on_skipped=skipped.append)
    task = await run(tailer)
    append(log, "a", "x" * 1000, "b", "y" * 150, "c")
    await until(lambda: sink.lines[-1:] == [b"c"])
    await stop(tailer, task)
    assert sink.lines == [b"a", b"b", b"c"]
    assert skipped == ["line too long", "line too long"]


async def test_the_tailer_rotates_a_long_file_and_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    reopened: list[int] = []

    async def reopen() -> None:
        # As Envoy does on /reopen_logs: later lines go to a new file at the path
        # (here the test's own appends do, once this has run).
        reopened.append(1)

    tailer = tailer_for(tmp_path, sink, rotate_bytes=20, reopen=reopen)
    task = await run(tailer)
    append(log, "a" * 10, "b" * 10)
    await until(lambda: len(sink.lines) == 2 and bool(reopened))
    # Renamed: the writer still appends to the old file until it reopens.
    assert rotated(log).exists() and not log.exists()
    append(rotated(log), "c")
    await until(lambda: len(sink.lines) == 3)
    append(log, "d")  # the writer reopened: a new file
    await until(lambda: len(sink.lines) == 4)
    await until(lambda: not rotated(log).exists())  # read to its end, then deleted
    await stop(tailer, task)
    assert sink.lines == [b"a" * 10, b"b" * 10, b"c", b"d"]
    assert len(reopened) == 1
