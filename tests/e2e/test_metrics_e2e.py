"""The sidecar's /metrics: merged over worker processes, valid for promtool."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from policy_sidecar.cli.launcher import Stack
from tests.e2e.conftest import BURST, KEY, at_once

pytestmark = pytest.mark.e2e


def scrape(stack: Stack) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10) as r:
        text: str = r.read().decode()
        return text


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_metrics_count_requests_tokens_decisions_and_phases(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0)
    at_once(  # both workers get some
        lambda _: client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    )
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    deadline = time.monotonic() + 10
    while True:
        text = scrape(stack)
        allowed = sum(
            v
            for labels, v in samples(text, "policy_sidecar_requests_total")
            if labels["decision"] == "allow" and labels["model"] == "gpt-4o-mini"
        )
        if allowed >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert allowed >= 4
    denials = samples(text, "policy_sidecar_policy_decisions_total")
    assert any(
        labels == {"policy_type": "model_allowlist", "policy_id": "pol-allow", "outcome": "deny"}
        for labels, _ in denials
    )
    tokens = {labels["kind"] for labels, _ in samples(text, "policy_sidecar_tokens_total")}
    assert {"prompt", "completion"} <= tokens
    phases = {
        labels["phase"]
        for labels, _ in samples(text, "policy_sidecar_phase_duration_seconds_count")
    }
    assert {"request_headers", "request_body"} <= phases


def test_exposition_passes_promtool(stack: Stack) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian package prometheus; .ci/run installs it)"
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=scrape(stack),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def allowed_requests(stack: Stack) -> float:
    return sum(
        v
        for labels, v in samples(scrape(stack), "policy_sidecar_requests_total")
        if labels["decision"] == "allow" and labels["model"] == "gpt-4o-mini"
    )


def test_requests_are_counted_once_over_both_workers(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0)
    before = allowed_requests(stack)
    at_once(  # sent at once, they reach both workers
        lambda _: client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    )
    deadline = time.monotonic() + 30
    while allowed_requests(stack) < before + BURST and time.monotonic() < deadline:
        time.sleep(0.1)
    # Exactly a burst: summed over the workers' registries, not doubled by the merge,
    # and the same on the next scrapes (a scrape reads, never adds).
    assert [allowed_requests(stack) for _ in range(3)] == [before + BURST] * 3
    assert samples(scrape(stack), "policy_sidecar_overload_rejections_total") == [({}, 0.0)]
