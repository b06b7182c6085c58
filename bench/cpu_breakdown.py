"""Where the ext_proc's CPU goes, per process and per thread, per JSON request.

    cd /tmp && PYTHONPATH=<checkout> python <checkout>/bench/cpu_breakdown.py \\
        --modes trivial,memory [--variant memory@<other checkout>:] [--strace 4]

(Run it from outside the checkout: ``python -m`` puts the working directory first on the
path, before ``PYTHONPATH``, so a variant's own code would not be the one imported.)

Starts the same targets as ``hot_path.py`` (the trivial ext_proc and the sidecar, the
product's own Envoy configuration and launcher), runs wrk at ``--connections`` (and with
``--c1`` at one connection) for ``--duration`` seconds, ``--rounds`` times interleaved,
and prints per JSON request the CPU time of each thread of the ext_proc processes, from
``/proc/*/task/*/schedstat`` (nanoseconds, not 10 ms ticks), grouped by the Python
thread's name (``py-spy dump``; the OS calls them all ``python``): ``MainThread`` (the
event loop), ``_poll_wrapper`` (grpc.aio's completion-queue poller), ``event_engine``
(grpc core), ``uvloop_N`` (the default executor: ``asyncio.to_thread``), and the
voluntary / involuntary context switches of each (a voluntary one is a thread going to
sleep: a hand-off). ``--variant`` adds targets with another environment or another
checkout's code, so an A/B is measured in one run. With ``--strace SECONDS`` it then
counts one worker's system calls per request (``strace -c -f``; slows that worker down,
so it is run apart from the CPU figures).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from hot_path import Bench, Target, descendants, is_worker, worker_counts, wrk

ThreadKey = tuple[int, int]


def threads(pids: list[int]) -> dict[ThreadKey, tuple[str, int, int, int]]:
    """(pid, tid) -> (thread name, CPU ns, voluntary, involuntary context switches)."""
    out: dict[ThreadKey, tuple[str, int, int, int]] = {}
    for pid in pids:
        for p in [pid, *descendants(pid)]:
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{p}/task"):
                    base = f"/proc/{p}/task/{tid}"
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        name = Path(f"{base}/comm").read_text().strip()
                        ns = int(Path(f"{base}/schedstat").read_text().split()[0])
                        status = Path(f"{base}/status").read_text()
                        vol = int(re.search(r"voluntary_ctxt_switches:\s+(\d+)", status)[1])  # type: ignore[index]
                        inv = int(re.search(r"nonvoluntary_ctxt_switches:\s+(\d+)", status)[1])  # type: ignore[index]
                        out[(p, int(tid))] = (name, ns, vol, inv)
    return out


def python_thread_names(pids: list[int]) -> dict[int, str]:
    """tid -> the Python thread's name (``py-spy dump``): the OS names them all python."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    names: dict[int, str] = {}
    if not Path(pyspy).exists():
        return names
    for pid in pids:
        for p in [pid, *descendants(pid)]:
            out = subprocess.run([pyspy, "dump", "-p", str(p)], capture_output=True, text=True)
            for m in re.finditer(
                r'^Thread (?:0x[0-9a-fA-F]+ )?(\d+) \(\w+\): "([^"]+)"', out.stdout, re.M
            ):
                names[int(m[1])] = re.sub(r"^Thread-\d+ \((.*)\)$", r"\1", m[2])
    return names


THREAD_NAMES: dict[int, str] = {}


def role(pid: int, root: int) -> str:
    if pid == root:
        return "supervisor"
    return "worker" if is_worker(pid) else "other"


def breakdown(target: Target, connections: int, duration: float, workdir: Path) -> dict[str, float]:
    pids = target.gateway_pids
    before = threads(pids)
    result = wrk(target, connections=connections, duration=duration, workdir=workdir)
    after = threads(pids)
    n = max(result["requests"], 1.0)
    per_name: collections.Counter[str] = collections.Counter()
    vol: collections.Counter[str] = collections.Counter()
    inv: collections.Counter[str] = collections.Counter()
    total = 0
    for key, (name, ns, v, i) in after.items():
        _, ns0, v0, i0 = before.get(key, (name, 0, 0, 0))
        name = THREAD_NAMES.get(key[1], name)
        label = role(key[0], pids[0]) + "/" + re.sub(r"[_-]?\d+$", "", name)
        per_name[label] += ns - ns0
        vol[label] += v - v0
        inv[label] += i - i0
        total += ns - ns0
    print(
        f"{target.mode}: c={connections} {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms,"
        f" p99 {result['p99_ms']:.2f} ms, CPU {total / n / 1000:.0f} µs/req"
        f" (non-2xx {result['non2xx']:.0f})"
    )
    for label, ns in per_name.most_common():
        if ns / n >= 1000 or vol[label] / n >= 0.05:
            print(
                f"    {label:34s} {ns / n / 1000:7.1f} µs/req   vol cs {vol[label] / n:5.2f}/req"
                f"   invol {inv[label] / n:5.2f}/req"
            )
    return {"rps": result["rps"], "p50_ms": result["p50_ms"], "cpu_us": total / n / 1000}


def strace_counts(target: Target, seconds: float, workdir: Path, top: int) -> None:
    if shutil.which("strace") is None:
        print("note: strace not installed")
        return
    workers = [p for p in descendants(target.gateway_pids[0]) if is_worker(p)] or [
        p for p in descendants(target.gateway_pids[0])
    ]
    if not workers:
        workers = target.gateway_pids
    pid = workers[0]
    counts0 = worker_counts(target)
    out = workdir / f"strace-{target.mode}.txt"
    spy = subprocess.Popen(
        ["strace", "-c", "-f", "-o", str(out), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    wrk(target, connections=8, duration=seconds, workdir=workdir)
    time.sleep(0.3)
    spy.send_signal(2)
    spy.wait(timeout=30)
    counts1 = worker_counts(target)
    # Requests that one worker handled while traced: Envoy's per-endpoint stream count.
    handled = sum(counts1.values()) - sum(counts0.values())
    per_worker = handled / max(len(counts1), 1)
    text = out.read_text() if out.exists() else ""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls = int(parts[3])
            rows.append((calls, parts[-1]))
    rows.sort(reverse=True)
    total = sum(c for c, _ in rows)
    print(
        f"{target.mode}: strace -c -f of worker {pid}, ~{per_worker:.0f} requests "
        f"(streams to all workers / workers): {total / max(per_worker, 1):.1f} syscalls/req"
    )
    for calls, name in rows[:top]:
        print(f"    {name:20s} {calls / max(per_worker, 1):6.2f}/req")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", default="trivial,memory")
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--c1", action="store_true", help="also wrk at one connection")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--strace", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--top", type=int, default=14)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the sidecar")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="MODE[@PYTHONPATH]:NAME=VALUE,...",
        help="one more sidecar target of MODE with this environment, optionally the code "
        "of another checkout (A/B in one run)",
    )
    args = parser.parse_args()
    args.sidecar_env = dict(e.split("=", 1) for e in args.env)
    args.quick = True
    args.upstream = getattr(args, "upstream", "plain")
    workdir = Path(tempfile.mkdtemp(prefix="ps-cpu-"))
    bench = Bench(args, workdir)
    print(f"load average {os.getloadavg()[0]:.1f} at start")
    try:
        bench.start_upstream()
        targets = [bench.target(m) for m in args.modes.split(",") if m]
        base_env = dict(args.sidecar_env)
        for variant in args.variant:
            mode, _, env = variant.partition(":")
            mode, _, code = mode.partition("@")
            args.sidecar_env = base_env | dict(e.split("=", 1) for e in env.split(",") if e)
            saved = os.environ.get("PYTHONPATH")
            if code:  # the sidecar of another checkout (e.g. a `git archive` of main: "main")
                os.environ["PYTHONPATH"] = code
            try:
                target = bench.target(mode)
            finally:
                if saved is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = saved
            target.mode = f"{mode}[{'main' if code else ''}{' ' if code and env else ''}{env}]"
            targets.append(target)
        for t in targets:
            wrk(t, connections=4, duration=2, workdir=workdir)
            THREAD_NAMES.update(python_thread_names(t.gateway_pids))
        runs: dict[tuple[str, int], list[dict[str, float]]] = collections.defaultdict(list)
        for _ in range(args.rounds):
            for t in targets:
                runs[(t.mode, args.connections)].append(
                    breakdown(t, args.connections, args.duration, workdir)
                )
                if args.c1:
                    runs[(t.mode, 1)].append(breakdown(t, 1, args.duration, workdir))
        print(f"medians of {args.rounds} round(s):")
        for (mode, c), figures in runs.items():
            med = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
            print(
                f"  {mode:40s} c={c:<3d} {med['rps']:6.0f} req/s  p50 {med['p50_ms']:5.2f} ms"
                f"  CPU {med['cpu_us']:5.0f} µs/req"
            )
        for t in targets:
            if args.strace:
                strace_counts(t, args.strace, workdir, args.top)
        print(f"load average {os.getloadavg()[0]:.1f} at end")
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
