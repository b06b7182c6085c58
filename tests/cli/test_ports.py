"""free_port: below the kernel's ephemeral range, never twice in a process, and apart
from what concurrent processes (and forked children) hand out."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

from policy_sidecar.cli.ports import free_port

RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Each child prints its ports, then holds them (stays alive) until its stdin closes.
CHILD = (
    "import sys; from policy_sidecar.cli.ports import free_port;"
    " print(*(free_port() for _ in range(150)), flush=True); sys.stdin.read()"
)


def test_ports_come_from_below_the_ephemeral_range() -> None:
    # Where outgoing connections never take their source port.
    low = int(RANGE.read_text().split()[0])
    assert all(1024 < free_port() < low for _ in range(20))


def test_a_process_never_hands_out_a_port_twice() -> None:
    ports = [free_port() for _ in range(350)]  # more than one block
    assert len(set(ports)) == len(ports)


def test_concurrent_processes_hand_out_different_ports() -> None:
    mine = {free_port() for _ in range(150)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    try:
        theirs = []
        for child in children:
            assert child.stdout is not None
            theirs.append({int(p) for p in child.stdout.readline().split()})
    finally:
        for child in children:
            child.communicate(b"", timeout=60)
    assert [len(t) for t in theirs] == [150, 150]
    assert not (theirs[0] & theirs[1]) and not (mine & (theirs[0] | theirs[1]))


def _report(queue: multiprocessing.Queue[list[int]]) -> None:
    queue.put([free_port() for _ in range(50)])


def test_a_forked_child_does_not_reuse_its_parents_block() -> None:
    mine = [free_port() for _ in range(50)]
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[int]] = ctx.Queue()
    child = ctx.Process(target=_report, args=(queue,))
    child.start()
    try:
        theirs = queue.get(timeout=60)
    finally:
        child.join(60)
    assert not set(mine) & set(theirs)
    # The parent carries on in its own block, still without repeats.
    later = [free_port() for _ in range(50)]
    assert not set(later) & (set(mine) | set(theirs))
