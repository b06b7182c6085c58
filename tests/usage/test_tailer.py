"""Following Envoy's access log: every line handed over once, in order, across restarts,
rotation and truncation; the cursor moves only once a batch is safe."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from policy_sidecar.usage.cursor import CURSOR_BYTES
from policy_sidecar.usage.tailer import FileTailer, rotated

DEADLINE = 30.0
ROOT = Path(__file__).resolve().parents[2]


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


async def test_a_cursor_of_the_older_format_is_read_and_then_rewritten_in_place(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    append(log, "a", "b")
    # As the previous version wrote it (replaced whole, unpadded): resume after "a".
    cursor = tmp_path / "cursor"
    cursor.write_text(json.dumps({"inode": os.stat(log).st_ino, "offset": 2}))
    sink = Sink()
    tailer = tailer_for(tmp_path, sink)
    task = await run(tailer)
    await until(lambda: sink.lines == [b"b"])
    append(log, "c")
    await until(lambda: sink.lines == [b"b", b"c"])
    await stop(tailer, task)
    saved = cursor.read_bytes()
    assert len(saved) == CURSOR_BYTES
    assert json.loads(saved) == {"inode": os.stat(log).st_ino, "offset": 6}


CHILD = """
import asyncio, os, sys
from policy_sidecar.usage.tailer import FileTailer

async def main(log, cursor, out):
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    async def consume(lines):
        os.write(fd, b"".join(line + b"\\n" for line in lines))
        return True
    tailer = FileTailer(log, cursor, consume, poll_seconds=0.001)
    await tailer.run()

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_killed_reader_resumes_where_its_cursor_was_written(tmp_path: Path) -> None:
    """SIGKILL: no stop, no flush to disk; the cursor written in place survives it."""
    log, cursor, out = tmp_path / "access.log", tmp_path / "cursor", tmp_path / "out"
    log.touch()
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(log), str(cursor), str(out),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    lines = [f"line-{i}" for i in range(400)]
    for i in range(0, 300, 10):
        append(log, *lines[i : i + 10])
        await asyncio.sleep(0.002)
    await until(lambda: out.exists() and len(out.read_bytes().splitlines()) >= 100)
    child.kill()
    await child.wait()
    append(log, *lines[300:])
    before = out.read_bytes().splitlines()
    sink = Sink()
    again = tailer_for(tmp_path, sink)
    task = await run(again)
    await until(lambda: sink.lines[-1:] == [lines[-1].encode()])
    await stop(again, task)
    # Nothing skipped, in order; what is handed over again (a batch stored but not yet
    # past the cursor when the process died) is the end of what the child had.
    resumed_at = lines.index(sink.lines[0].decode())
    assert [x.decode() for x in sink.lines] == lines[resumed_at:]
    assert [x.decode() for x in before] == lines[: len(before)]
    assert resumed_at <= len(before)


async def test_an_idle_reader_is_woken_by_the_write_not_by_a_poll(tmp_path: Path) -> None:
    # The fallback poll is far longer than the deadline: only the directory's change
    # event can deliver these lines in time (the file is created, then appended to).
    log = tmp_path / "access.log"
    sink = Sink()
    tailer = tailer_for(tmp_path, sink, idle_seconds=3600.0)
    reads = 0
    step = tailer._step

    async def counted() -> bool:
        nonlocal reads
        reads += 1
        return await step()

    tailer._step = counted  # type: ignore[method-assign]
    task = await run(tailer)
    await asyncio.sleep(0.5)  # idle: waiting on the directory, not polling every 10 ms
    assert reads <= 2, reads
    append(log, "a")
    await until(lambda: sink.lines == [b"a"])
    await asyncio.sleep(0.2)
    append(log, "b", "c")
    await until(lambda: sink.lines == [b"a", b"b", b"c"])
    # A rotation (rename, new file) wakes it too; the old file is read to its end.
    log.rename(tmp_path / "access.log.1")
    append(tmp_path / "access.log.1", "d")
    append(log, "e")
    await until(lambda: sink.lines == [b"a", b"b", b"c", b"d", b"e"])
    # `stop` cuts the idle wait short.
    await asyncio.wait_for(stop(tailer, task), DEADLINE)


async def test_without_the_watch_the_reader_polls(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    sink = Sink()
    tailer = tailer_for(tmp_path, sink, idle_seconds=3600.0, watch=False)
    task = await run(tailer)
    await asyncio.sleep(0.1)
    append(log, "a")
    await until(lambda: sink.lines == [b"a"])
    await stop(tailer, task)


def test_no_watch_on_a_missing_directory(tmp_path: Path) -> None:
    from policy_sidecar.usage.file_events import open_directory_events

    assert open_directory_events(tmp_path / "missing") is None
    events = open_directory_events(tmp_path)
    assert events is not None
    events.close()
