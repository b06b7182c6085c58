"""Each worker process on a CPU of its own (``POLICY_SIDECAR_PIN_WORKERS``).

A worker is two busy threads: the event loop and gRPC's completion-queue poller, which
hands every gRPC event to the loop under the GIL. Left to the scheduler, the two land on
different CPUs and each hand-off wakes the other CPU and moves the GIL's cache lines
across; pinned to one CPU, the hand-off stays local. Measured on 2 cores
(BENCHMARKS.md, "Workers pinned to a CPU"): 0.3 ms less added latency at one connection,
+10 % throughput. A worker pins its main thread first thing, before gRPC or any other
thread starts, so every thread it creates inherits the CPU.

``auto`` (the default) pins only when the process may run on exactly as many CPUs as
there are workers, worker *i* on the *i*-th allowed CPU: the CPUs are then the
sidecar's own (a Kubernetes pod with whole-CPU requests under the static CPU manager
policy, a container given ``--cpuset-cpus``, a machine sized for it). With more CPUs
allowed (a shared node, where every pod sees all of them) pinning would put the first
worker of every sidecar on the node on the same CPU; with fewer it would stack workers;
so in both cases the scheduler keeps them. ``true`` pins in turn over the allowed CPUs
whatever their number; ``false`` never pins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Literal

log = logging.getLogger(__name__)

PinMode = Literal["auto", "true", "false"]


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on, in order (empty where the OS cannot tell)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return []


def worker_cpus(workers: int, mode: PinMode, allowed: Sequence[int]) -> list[int | None]:
    """The CPU each of ``workers`` workers pins to (None: not pinned)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if mode == "false" or not allowed or (mode == "auto" and len(allowed) != workers):
        return [None] * workers
    return [allowed[i % len(allowed)] for i in range(workers)]


def pin_current_thread(cpu: int | None) -> None:
    """Pins the calling thread (and every thread it starts from now on) to ``cpu``.
    A CPU that cannot be had (taken away since, or a sandbox that forbids it) is logged
    and left: the worker runs unpinned rather than not at all."""
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError) as exc:  # pragma: no cover - depends on the host
        log.warning("could not pin this worker to CPU %d: %s; it runs unpinned", cpu, exc)
