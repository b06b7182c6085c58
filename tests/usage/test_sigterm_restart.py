"""SIGTERM with a full queue and a hung database: nothing is lost across a restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
N = 3000


async def run_child(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.usage.sigterm_child", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def json_line(proc: asyncio.subprocess.Process) -> dict[str, int]:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
    assert line, "child exited early"
    data: dict[str, int] = json.loads(line)
    return data


def child_env(spool: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "POLICY_SIDECAR_SPOOL_DIR": str(spool),
        "POLICY_SIDECAR_USAGE_QUEUE_SIZE": "500",
        "POLICY_SIDECAR_USAGE_BATCH_SIZE": "100",
        "POLICY_SIDECAR_USAGE_BATCH_DELAY": "0.05",
        "POLICY_SIDECAR_GRACE_SECONDS": "0.3",
    }


async def db_counts(dsn: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT count(*), count(DISTINCT request_id) FROM usage_metrics")
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_sigterm_with_full_queue_then_restart_writes_everything_once(
    dsn: str, tmp_path: Path
) -> None:
    env = child_env(tmp_path / "spool")
    first = await run_child("fill", str(N), env=env)
    before = await json_line(first)
    assert before["queued"] == 500  # the queue is full: the overflow went to the spool
    first.send_signal(signal.SIGTERM)
    after = await json_line(first)
    async with asyncio.timeout(60):
        assert await first.wait() == 0
    assert after == {"queued": 0, "spooled": N, "written": 0}

    second = await run_child("replay", dsn, env=env)
    replayed = await json_line(second)
    async with asyncio.timeout(60):
        assert await second.wait() == 0
    assert replayed == {"written": N, "replayed": N, "dropped": 0}

    assert await db_counts(dsn) == (N, N)


async def test_sigkill_keeps_what_was_spooled(dsn: str, tmp_path: Path) -> None:
    """A crash loses what was in memory, by definition; what reached the spool is
    fsynced and replayed by the next process, once."""
    env = child_env(tmp_path / "spool")
    first = await run_child("fill", str(N), env=env)
    before = await json_line(first)
    first.kill()
    async with asyncio.timeout(60):
        assert await first.wait() == -signal.SIGKILL
    assert before["spooled"] > 0

    second = await run_child("replay", dsn, env=env)
    replayed = await json_line(second)
    async with asyncio.timeout(60):
        assert await second.wait() == 0
    assert replayed == {"written": before["spooled"], "replayed": before["spooled"], "dropped": 0}
    assert await db_counts(dsn) == (before["spooled"], before["spooled"])
