"""A batch of records observed at once gives the metrics that observing each gives."""

from __future__ import annotations

import dataclasses

from policy_sidecar.observability import metrics
from policy_sidecar.usage.record import UsageRecord
from tests.usage.helpers import rec


def _samples(provider: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for metric in (
        metrics.REQUESTS,
        metrics.TOKENS,
        metrics.REQUEST_DURATION,
        metrics.TIME_TO_FIRST_TOKEN,
    ):
        for family in metric.collect():
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                labels = dict(s.labels)
                if labels.get("provider", provider) != provider:
                    continue
                if labels.get("app", "") != "" and labels["app"] != provider:
                    continue
                out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def _batch(provider: str) -> list[UsageRecord]:
    records = []
    for i in range(12):
        r = dataclasses.replace(
            rec(i),
            provider=provider,
            app_id=provider,
            requested_model=f"m{i % 3}",
            latency_ms=10.0 * i,
            ttft_ms=5.0 * i if i % 2 else None,
            usage_reported=i % 4 != 0,
            decision="incomplete" if i % 5 == 0 else "allow",
            status_code=500 if i % 6 == 0 else 200,
        )
        records.append(r)
    return records


def test_a_batch_counts_what_its_records_count_one_by_one() -> None:
    for r in _batch("batch-one-by-one"):
        metrics.observe_record(r)
    metrics.observe_records(_batch("batch-at-once"))
    one = _samples("batch-one-by-one")
    once = _samples("batch-at-once")
    rename = {
        key: (key[0], tuple((k, v.replace("one-by-one", "at-once")) for k, v in key[1]))
        for key in one
    }
    assert {rename[k]: v for k, v in one.items()} == once
    tokens = sum(v for (name, labels), v in once.items() if name == "policy_sidecar_tokens_total")
    assert tokens == sum(
        r.prompt_tokens + r.completion_tokens + r.cached_tokens + r.reasoning_tokens
        for r in _batch("x")
        if r.usage_reported
    )
    requests = sum(v for (name, _), v in once.items() if name == "policy_sidecar_requests_total")
    assert requests == 12
