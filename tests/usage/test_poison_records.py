"""One record must never stop recording (real Postgres).

Records the database cannot store are bounded before they are queued; what the sink
still refuses is isolated (the batch is split), set aside in rejected.jsonl with the
reason and counted, and the rest is stored. Only connection-like errors are retried.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import psycopg
import psycopg_pool
import pytest
from psycopg import errors

from policy_sidecar.store.postgres import UsageRepository
from policy_sidecar.store.postgres.errors import InvalidError
from policy_sidecar.store.postgres.pool import Pool
from policy_sidecar.store.postgres.usage_sink import PostgresUsageSink, is_transient
from policy_sidecar.usage.bounds import MAX_TEXT, MAX_TOKENS
from policy_sidecar.usage.metrics import FLAGGED, REJECTED
from policy_sidecar.usage.record import UsageRecord
from policy_sidecar.usage.recorder import BatchingRecorder
from policy_sidecar.usage.sinks import RejectedBatchError
from policy_sidecar.usage.spiller import Spiller
from policy_sidecar.usage.spool import Spool
from policy_sidecar.usage.writer import SinkWriter

from .helpers import metrics, rec, spool_pending

# 8 KB a client may send as x-request-id; random, so Postgres cannot compress it below
# the 2,704-byte btree limit ("index row size exceeds maximum").
BIG_ID = "".join(random.Random(8).choices(string.ascii_letters + string.digits, k=8192))

# Records as an older version could have queued or spooled them: not bounded.
POISON = {
    "8k_request_id": replace(rec(50), request_id=BIG_ID),
    "1e30_tokens": replace(rec(51), prompt_tokens=10**30),
    "negative_bigint_overflow": replace(rec(52), response_bytes=-(2**70)),
    "nul_in_text": replace(rec(53), served_model="gpt\x00-4o"),
    "8k_model_in_rollup_key": replace(rec(54), requested_model=BIG_ID),
    "naive_time": replace(rec(55), started_at=datetime(2026, 3, 1, 12)),
}


async def rows(pool: Pool) -> dict[str, tuple[str | None, list[str], int]]:
    """request_id -> (client_request_id, usage_flags, prompt_tokens)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT request_id, client_request_id, usage_flags, prompt_tokens FROM usage_metrics"
        )
        return {r[0]: (r[1], list(r[2]), int(r[3])) for r in await cur.fetchall()}


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (psycopg.OperationalError("connection lost"), True),  # no SQLSTATE: client side
        (psycopg_pool.PoolTimeout("no connection"), True),
        (errors.AdminShutdown(), True),
        (errors.UndefinedColumn(), True),  # not migrated yet: no record is at fault
        (errors.DeadlockDetected(), True),
        (errors.DiskFull(), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (errors.ProgramLimitExceeded(), False),  # index row too big
        (errors.NumericValueOutOfRange(), False),
        (errors.CharacterNotInRepertoire(), False),
        (errors.UniqueViolation(), False),
        (OverflowError("int too big to convert"), False),  # while encoding the COPY
        (ValueError("bad value"), False),
        (InvalidError("usage record", "started_at", "naive"), False),
    ],
)
def test_only_errors_that_say_nothing_about_the_records_are_transient(
    exc: BaseException, transient: bool
) -> None:
    assert is_transient(exc) is transient


@pytest.mark.postgres
@pytest.mark.parametrize("name", list(POISON))
async def test_sink_refuses_a_poison_record_for_good(pool: Pool, name: str) -> None:
    sink = PostgresUsageSink(UsageRepository(pool))
    with pytest.raises(RejectedBatchError):
        await sink.write([rec(0), POISON[name], rec(2)])
    assert await rows(pool) == {}  # one transaction: nothing half-written


@pytest.mark.postgres
async def test_one_bad_row_in_the_middle_is_quarantined_and_the_rest_lands(
    pool: Pool, tmp_path: Path
) -> None:
    m = metrics()
    spool = Spool(tmp_path)
    spiller = Spiller(spool, m, max_overflow=10, price=lambda b: b)
    writer = SinkWriter(PostgresUsageSink(UsageRepository(pool)), m, spiller, lambda b: b)
    batch = [rec(i) for i in range(4)] + [POISON["8k_request_id"]] + [rec(i) for i in range(5, 9)]
    assert await writer.store(batch)
    stored = await rows(pool)
    assert sorted(stored) == sorted(f"r{i}" for i in range(9) if i != 4)
    (line,) = (tmp_path / "rejected.jsonl").read_text().splitlines()
    rejected = json.loads(line)
    assert rejected["request_id"] == BIG_ID
    assert "ProgramLimitExceeded" in rejected["rejected_reason"]
    assert "index row" in rejected["rejected_reason"]
    assert UsageRecord.from_json_dict(rejected) == POISON["8k_request_id"]
    assert m.value(REJECTED + "_total") == 1
    spool.close()


@pytest.mark.postgres
async def test_oversized_request_ids_are_replaced_and_recording_goes_on(
    pool: Pool, tmp_path: Path
) -> None:
    m = metrics()
    recorder = BatchingRecorder(
        PostgresUsageSink(UsageRepository(pool)), spool=Spool(tmp_path), metrics=m, max_batch=50
    )
    for i in range(3):
        recorder.record(replace(rec(100 + i), request_id=f"{i}" + BIG_ID))
    for i in range(20):
        recorder.record(rec(i))
    recorder.record(replace(rec(200), request_id="huge", prompt_tokens=10**30))
    await recorder.close(grace_seconds=30)
    stored = await rows(pool)
    assert len(stored) == 24
    assert {f"r{i}" for i in range(20)} <= set(stored)
    replaced = [v for k, v in stored.items() if v[0] is not None]
    assert sorted(client or "" for client, _, _ in replaced) == sorted(
        (f"{i}" + BIG_ID)[:MAX_TEXT] for i in range(3)
    )
    assert all(flags == ["request_id_replaced"] for _, flags, _ in replaced)
    assert stored["huge"] == (None, ["tokens_out_of_range"], MAX_TOKENS)
    assert (recorder.rejected, recorder.dropped) == (0, 0)
    assert m.registry.get_sample_value(FLAGGED + "_total", {"flag": "request_id_replaced"}) == 3
    assert spool_pending(tmp_path) == 0


@pytest.mark.postgres
async def test_poison_spooled_by_an_older_version_never_blocks_the_replay(
    pool: Pool, tmp_path: Path
) -> None:
    old = Spool(tmp_path)
    old.append([rec(0), *POISON.values(), rec(1)])
    old.close()

    m = metrics()
    sink = PostgresUsageSink(UsageRepository(pool))
    recorder = BatchingRecorder(sink, spool=Spool(tmp_path), metrics=m)
    recorder.start()
    await recorder.close(grace_seconds=30)
    stored = await rows(pool)
    # Bounded on replay and stored; only the naive time cannot be made right.
    assert len(stored) == 2 + len(POISON) - 1
    assert stored["r51"] == (None, ["tokens_out_of_range"], MAX_TOKENS)
    (line,) = (tmp_path / "rejected.jsonl").read_text().splitlines()
    assert json.loads(line)["request_id"] == "r55"
    assert "naive" in json.loads(line)["rejected_reason"]
    assert (recorder.rejected, recorder.dropped, spool_pending(tmp_path)) == (1, 0, 0)

    # A restart replays nothing: the poison is not in the spool any more.
    again = BatchingRecorder(sink, spool=Spool(tmp_path), metrics=metrics())
    again.start()
    await again.close(grace_seconds=30)
    assert (again.replayed, again.rejected, sink.inserted) == (0, 0, len(stored))
