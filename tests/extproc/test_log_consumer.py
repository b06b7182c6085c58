"""The access log reader's batches: the lines' completions run together, records in line order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from policy_sidecar.envoy.access_log import LogEntry
from policy_sidecar.extproc.log_consumer import LogConsumer
from policy_sidecar.usage.record import UsageRecord
from tests.extproc.access_lines import line


class Accepting:
    async def store(self, records: object) -> bool:
        return True


class Held:
    """Completes each line once ``release`` is set; ``running`` counts lines under way."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.most = 0
        self.cancelled: list[str] = []

    async def complete(self, entry: LogEntry) -> UsageRecord | None:
        rid = entry.request_id or ""
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if rid != "quick":
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(rid)
            raise
        finally:
            self.running -= 1
        if rid == "bad":
            raise ValueError("unusable")
        if rid == "ours":
            return None  # recorded by the policy filter already
        return UsageRecord(rid, datetime.fromtimestamp(1.0, UTC), "allow", 200)


def lines(*ids: str) -> list[bytes]:
    return [line({"rid": i, "t0": 1.0}, request_id=i) for i in ids]


async def test_a_batch_runs_together_and_keeps_the_line_order() -> None:
    held = Held()
    consumer = LogConsumer(held, Accepting())  # type: ignore[arg-type]
    batch = [*lines("a", "quick", "bad"), b"not json", *lines("ours", "b", "c")]
    work = asyncio.ensure_future(consumer.records(batch))
    for _ in range(5):
        await asyncio.sleep(0)
    assert held.most == 5 and held.running == 5  # all but "quick" wait together
    held.release.set()
    records = await work
    assert [r.request_id for r in records] == ["a", "quick", "b", "c"]


async def test_one_line_alone_and_an_empty_batch() -> None:
    held = Held()
    held.release.set()
    consumer = LogConsumer(held, Accepting())  # type: ignore[arg-type]
    assert [r.request_id for r in await consumer.records(lines("a"))] == ["a"]
    assert await consumer.records([b"{}", b"x"]) == []


async def test_cancelling_a_batch_cancels_its_lines() -> None:
    held = Held()
    consumer = LogConsumer(held, Accepting())  # type: ignore[arg-type]
    work = asyncio.ensure_future(consumer.records(lines("a", "quick", "b", "c")))
    for _ in range(5):
        await asyncio.sleep(0)
    assert held.running == 3
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(held.cancelled) == ["a", "b", "c"] and held.running == 0
