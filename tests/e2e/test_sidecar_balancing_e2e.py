"""Envoy's load balancer over the sidecar's workers, as rendered: one warm worker at low
load, all of them under load (docs/envoy.md, "Several worker processes")."""

from __future__ import annotations

import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from policy_sidecar.cli.launcher import Stack
from tests.e2e.conftest import KEY

pytestmark = pytest.mark.e2e


def worker_requests(stack: Stack) -> dict[int, float]:
    """Policy streams each worker received, from the sidecar's merged /metrics."""
    url = f"http://127.0.0.1:{stack.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    prefix = 'policy_sidecar_worker_requests_total{worker="'
    counts = dict.fromkeys(stack.sidecar_ports, 0.0)
    for line in text.splitlines():
        if line.startswith(prefix):
            port, value = line[len(prefix) :].split('"} ')
            counts[int(port)] = float(value)
    return counts


def sent(stack: Stack, before: dict[int, float], n: int) -> dict[int, float]:
    """What each worker received since ``before``, once all ``n`` requests are counted."""
    deadline = time.monotonic() + 10
    while True:
        now = worker_requests(stack)
        diff = {port: now[port] - before[port] for port in now}
        if sum(diff.values()) >= n or time.monotonic() > deadline:
            return diff
        time.sleep(0.05)


def chat(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )


def test_one_request_at_a_time_stays_on_the_first_worker(stack: Stack) -> None:
    first, second = stack.sidecar_ports
    before = worker_requests(stack)
    for _ in range(20):
        chat(stack)
        # The previous stream is closed (its trailers back) before the next one starts:
        # one request at a time, as a lightly loaded gateway sees them.
        time.sleep(0.02)
    diff = sent(stack, before, 20)
    # Round robin gave each worker 10. The schedule gives the second worker one stream
    # in every 17 while the first has none in flight: at most two of these 20.
    assert diff[first] >= 18 and diff[first] + diff[second] == 20, diff


def test_concurrent_requests_reach_every_worker(stack: Stack) -> None:
    first, second = stack.sidecar_ports
    before = worker_requests(stack)
    with ThreadPoolExecutor(16) as pool:
        for _ in range(3):  # bursts of 16 at once
            list(pool.map(lambda _: chat(stack), range(16)))
    diff = sent(stack, before, 48)
    assert diff[first] + diff[second] == 48, diff
    # Streams in flight divide the first worker's weight by (active + 1) ** 2: a burst
    # spills over to the second as soon as a few are in flight on the first.
    assert diff[second] >= 48 // 8, diff


def cpus_of(pid: int) -> list[set[int]]:
    """The CPUs each thread of a process may run on."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        out.append(os.sched_getaffinity(int(tid)))
    return out


def test_each_worker_runs_on_a_cpu_of_its_own(stack: Stack) -> None:
    """``POLICY_SIDECAR_PIN_WORKERS=auto``: with exactly as many CPUs as workers (two
    here), every thread of worker *i* (the event loop and the threads it started) is on the
    *i*-th CPU; with another count nothing is pinned (docs/envoy.md)."""
    chat(stack)  # every thread gRPC starts for a stream exists by now
    sidecar = stack.processes["sidecar"].popen.pid
    children = [
        int(p) for p in Path(f"/proc/{sidecar}/task/{sidecar}/children").read_text().split()
    ]
    # The spawned workers, not multiprocessing's resource tracker.
    workers = sorted(
        p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
    )
    assert len(workers) == 2, children
    allowed = sorted(os.sched_getaffinity(0))
    threads = [cpus_of(pid) for pid in workers]
    if len(allowed) == 2:
        assert threads == [[{allowed[0]}] * len(threads[0]), [{allowed[1]}] * len(threads[1])]
        assert all(len(t) >= 2 for t in threads), threads  # not only the main thread
    else:
        assert all(cpus == set(allowed) for t in threads for cpus in t), threads
