"""Where a paced SSE stream's time to first token and gateway CPU go, filter by filter.

    PYTHONPATH=. python bench/stream_bisect.py --streams 40
    PYTHONPATH=. python bench/stream_bisect.py --modes envoy,lua,memory --streams 60

The rows (``hot_path.py``'s stacks, same upstream: the fake provider pacing 200 chunks
2 ms apart, behind an upstream Envoy):

- ``direct``: straight to the upstream Envoy (no gateway at all: the floor);
  ``direct+usage`` the same, the stream asking for ``stream_options.include_usage``
  as the sidecar's rewrite does;
- ``envoy``: the gateway Envoy with every ext_proc and Lua filter and the access log
  removed;
- ``lua``: Envoy plus the Lua capture filter and the access log, no ext_proc;
- ``memory-nolua``: the sidecar (in-process counters) without the Lua capture;
- ``memory``: the sidecar as shipped (policy ext_proc + Lua capture + access log);
- ``memory-noinject``: the same, without the ``stream_options.include_usage``
  rewrite (``POLICY_SIDECAR_INJECT_STREAM_USAGE=false``: the body goes unchanged);
- ``trivial``: the trivial Python ext_proc that sees every chunk (for comparison).

Streams are **interleaved** at concurrency 1 (one stream of each row in turn, for
``--streams`` turns), so a load change on a shared machine hits every row alike. For
each stream the client records the time to the response headers, to the first SSE
line and to the end, then, after 0.4 s idle, five non-streamed JSON requests (answered
by the upstream Envoy; ``JSON`` column: the median of the last four, back to back; the
first, after idling, only in Envoy's timing as ``json-idle``); and the CPU the row's processes (Envoy; sidecar or ext_proc with
their children) spent during it, from ``/proc/<pid>/task/*/schedstat`` (nanoseconds,
every thread), so per-stream CPU needs no long run. Then ``--c8`` streams 8 at a time
per row, rows in turn for ``--rounds`` rounds, for CPU per stream under concurrency
(Envoy's and the ext_proc's apart). ``--lua-alt FILE`` adds rows ``lua-alt`` and
``memory-alt`` (when named in ``--modes``) that run another capture script, to compare
a change of the Lua filter with the shipped one in the same run. Last, ``--idle``
seconds without traffic: each row's CPU per second at rest (the sidecar's access log
reader polls its file), then Envoy's timing medians. Prints medians and the
difference to ``envoy``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

import hot_path
from hot_path import BODY, STREAM_HEADERS, Bench, Target, descendants

ROWS = ("direct", "direct+usage", "envoy", "lua", "memory-nolua", "memory", "trivial")


def replace_lua(config: dict[str, Any], source: str) -> None:
    for filters in hot_path.http_filter_lists(config):
        for f in filters:
            if hot_path.is_lua(f):
                f["typed_config"]["default_source_code"] = {"inline_string": source}


def cpu_ns(pids: list[int]) -> int:
    """Run time of every thread of the processes and their descendants, in ns."""
    total = 0
    for pid in pids:
        for p in [pid, *descendants(pid)]:
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{p}/task"):
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        total += int(
                            Path(f"/proc/{p}/task/{task}/schedstat").read_text().split()[0]
                        )
    return total


def pids(target: Target) -> list[int]:
    return [*target.gateway_pids, *([target.envoy_pid] if target.envoy_pid else [])]


# Requests the sidecar shed (its fast 503 past capacity: on a very busy machine a
# request can wait longer than POLICY_SIDECAR_MAX_QUEUE_MS), retried, per row.
SHED: dict[str, int] = {}


def shed(target: Target, status: int, text: bytes) -> bool:
    if status == 503 and b"sidecar_overloaded" in text:
        SHED[target.mode] = SHED.get(target.mode, 0) + 1
        return True
    return False


async def json_request(
    session: aiohttp.ClientSession, target: Target, kind: str = "json", retries: int = 3
) -> float:
    """One non-streamed chat request (the upstream Envoy answers it itself), in ms."""
    start = time.perf_counter()
    headers = {"authorization": f"Bearer {target.key}", hot_path.KIND_HEADER: kind}
    async with session.post(target.url, json=BODY, headers=headers) as resp:
        text = await resp.read()
        if shed(target, resp.status, text) and retries:
            await asyncio.sleep(0.1)
            return await json_request(session, target, kind, retries - 1)
        if resp.status != 200:
            raise SystemExit(f"{target.mode}: {resp.status} {text[:300]!r}")
    return (time.perf_counter() - start) * 1e3


async def one(
    session: aiohttp.ClientSession,
    target: Target,
    chunks: int,
    gap: float = 0.05,
    retries: int = 3,
) -> tuple[float, float, float, int]:
    """(headers, first line, end) in ms, and the CPU ns of the row's processes."""
    body = {**BODY, "model": target.stream_model, "stream": True, "max_tokens": chunks}
    if target.mode == "direct+usage":  # what the sidecar's rewrite asks of the provider
        body["stream_options"] = {"include_usage": True}
    headers = {
        "authorization": f"Bearer {target.key}",
        hot_path.KIND_HEADER: "stream",
        **STREAM_HEADERS,
    }
    cpu0 = cpu_ns(pids(target))
    start = time.perf_counter()
    first = 0.0
    async with session.post(target.url, json=body, headers=headers) as resp:
        head = time.perf_counter() - start
        if resp.status != 200:
            text = await resp.read()
            if shed(target, resp.status, text) and retries:
                await asyncio.sleep(0.1)
                return await one(session, target, chunks, gap, retries - 1)
            raise SystemExit(f"{target.mode}: {resp.status} {text[:300]!r}")
        async for _line in resp.content:
            if not first:
                first = time.perf_counter() - start
    end = time.perf_counter() - start
    # The access log line and its reading come after the stream ends: let them happen
    # (0 for back-to-back streams, as hot_path.py sends them).
    await asyncio.sleep(gap)
    return head * 1e3, first * 1e3, end * 1e3, cpu_ns(pids(target)) - cpu0


async def interleaved(
    targets: dict[str, Target], turns: int, chunks: int, burst: int = 1
) -> tuple[dict[str, list[tuple[float, float, float, int]]], dict[str, list[float]]]:
    out: dict[str, list[tuple[float, float, float, int]]] = {m: [] for m in targets}
    plain: dict[str, list[float]] = {m: [] for m in targets}
    sessions = {
        m: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), auto_decompress=False)
        for m in targets
    }
    try:
        for m, t in targets.items():  # warm each row's connections
            await one(sessions[m], t, chunks)
        for _ in range(turns):
            for m, t in targets.items():
                if burst > 1:  # back to back: keep the streams that follow another
                    for i in range(burst):
                        got = await one(sessions[m], t, chunks, gap=0.0)
                        if i:
                            out[m].append(got)
                    await asyncio.sleep(0.05)
                else:
                    out[m].append(await one(sessions[m], t, chunks))
                # The first after an idle spell (as a stream's request is, at c=1: the
                # sidecar idles while a stream flows), then four right after each other.
                await asyncio.sleep(0.4)
                await json_request(sessions[m], t, "json-idle")
                for _ in range(4):
                    plain[m].append(await json_request(sessions[m], t))
    finally:
        for s in sessions.values():
            await s.close()
    return out, plain


async def concurrent(target: Target, count: int, chunks: int) -> tuple[float, float]:
    """CPU ms per stream of the row's Envoy and of its ext_proc processes, ``count``
    streams 8 at a time."""
    connector = aiohttp.TCPConnector(limit=8)
    envoy = [target.envoy_pid] if target.envoy_pid else []
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        sem = asyncio.Semaphore(8)

        async def bounded() -> None:
            async with sem:
                body = {**BODY, "model": target.stream_model, "stream": True, "max_tokens": chunks}
                headers = {
                    "authorization": f"Bearer {target.key}",
                    hot_path.KIND_HEADER: "stream-c8",
                    **STREAM_HEADERS,
                }
                async with session.post(target.url, json=body, headers=headers) as resp:
                    async for _ in resp.content.iter_chunked(65536):
                        pass

        await bounded()
        await asyncio.sleep(0.2)
        e0, g0 = cpu_ns(envoy), cpu_ns(target.gateway_pids)
        await asyncio.gather(*(bounded() for _ in range(count)))
        await asyncio.sleep(0.2)  # the last access log lines read
        e1, g1 = cpu_ns(envoy), cpu_ns(target.gateway_pids)
        return (e1 - e0) / count / 1e6, (g1 - g0) / count / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", default=",".join(ROWS))
    parser.add_argument("--streams", type=int, default=40, help="interleaved turns at c=1")
    parser.add_argument("--c8", type=int, default=32, help="streams per row at c=8 (0: none)")
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument(
        "--burst",
        type=int,
        default=1,
        help="streams back to back per row and turn (>1: only those after another count)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the c=8 CPU runs")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds of idle CPU measured (0: none)"
    )
    parser.add_argument(
        "--lua-alt",
        type=Path,
        help="another capture script: rows lua-alt and memory-alt run it instead",
    )
    args = parser.parse_args()
    args.sidecar_env = {}
    args.litellm = None
    modes = [m for m in args.modes.split(",") if m]
    if "envoy" not in modes:
        modes.insert(0, "envoy")
    bench = Bench(args, Path(tempfile.mkdtemp(prefix="ps-stream-bisect-")))
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    try:
        bench.start_upstream()
        targets: dict[str, Target] = {}
        for m in modes:
            if m in ("direct", "direct+usage"):
                targets[m] = Target(
                    m,
                    f"http://127.0.0.1:{bench.upstream_port}/v1/chat/completions",
                    hot_path.KEY,
                    None,
                    [],
                    None,
                )
            elif m in ("lua-alt", "memory-alt"):
                if args.lua_alt is None:
                    raise SystemExit(f"{m} needs --lua-alt")
                swap = functools.partial(replace_lua, source=args.lua_alt.read_text())
                targets[m] = bench.target("lua" if m == "lua-alt" else "memory", swap)
                targets[m].mode = m
            elif m == "memory-noinject":
                args.sidecar_env = {"POLICY_SIDECAR_INJECT_STREAM_USAGE": "false"}
                targets[m] = bench.target("memory", lambda c: None)
                targets[m].mode = m
                args.sidecar_env = {}
            elif m in hot_path.SIDECAR_MODES:
                # Restarted through start_envoy_config (the timing log), as rendered.
                transform = hot_path.without_lua if m == "memory-nolua" else lambda c: None
                targets[m] = bench.target(m, transform)
            else:
                targets[m] = bench.target(m)
        got, plain = asyncio.run(interleaved(targets, args.streams, args.chunks, args.burst))
        base = got["envoy"]

        def med(rows: list[tuple[float, float, float, int]], i: int) -> float:
            return statistics.median(r[i] for r in rows)

        print(
            f"\n{args.streams} interleaved streams per row at c=1, medians "
            f"(load average now {os.getloadavg()[0]:.1f}):"
        )
        print(
            f"{'row':13s} {'headers':>8s} {'TTFT':>7s} {'TTFT+':>7s} {'TTFT p25-p75':>14s} "
            f"{'total':>7s} {'chunk+':>7s} {'CPU/strm':>9s} {'CPU+':>7s} {'JSON':>7s} {'JSON+':>7s}"
        )
        json_base = statistics.median(plain["envoy"])
        for m, rows in got.items():
            ttft = sorted(r[1] for r in rows)
            q = statistics.quantiles(ttft, n=4)
            added = med(rows, 1) - med(base, 1)
            per_chunk = ((med(rows, 2) - med(base, 2)) - added) / args.chunks * 1e3
            cpu = med(rows, 3) / 1e6
            print(
                f"{m:13s} {med(rows, 0):7.2f}m {med(rows, 1):6.2f}m {added:6.2f}m "
                f"{q[0]:6.2f}-{q[2]:6.2f}m {med(rows, 2):6.1f}m {per_chunk:6.1f}u "
                f"{cpu:8.2f}m {cpu - med(base, 3) / 1e6:6.2f}m "
                f"{statistics.median(plain[m]):6.2f}m {statistics.median(plain[m]) - json_base:6.2f}m"
            )
        print("(m = ms, u = µs; CPU = Envoy + ext_proc processes, all threads, per stream)")
        if args.c8:
            print(
                f"\nc=8, {args.c8} streams per row and round, {args.rounds} round(s) "
                "interleaved, medians: CPU ms per stream"
            )
            per: dict[str, list[tuple[float, float]]] = {m: [] for m in targets}
            for _ in range(args.rounds):
                for m, t in targets.items():
                    per[m].append(asyncio.run(concurrent(t, args.c8, args.chunks)))
            env0 = statistics.median(e for e, _ in per["envoy"])
            print(f"  {'row':13s} {'Envoy':>7s} {'ext_proc':>8s} {'Envoy+':>7s} {'added':>7s}")
            for m, rows in per.items():
                e = statistics.median(e for e, _ in rows)
                g = statistics.median(g for _, g in rows)
                print(f"  {m:13s} {e:7.2f} {g:8.2f} {e - env0:+7.2f} {e - env0 + g:+7.2f}")
            print("  (added = ext_proc + Envoy over Envoy alone: the gateway's CPU per stream)")
        if args.idle:
            print(f"\nidle ({args.idle:.0f} s, no traffic): CPU ms per second")
            envoys = {m: [t.envoy_pid] if t.envoy_pid else [] for m, t in targets.items()}
            before = {m: (cpu_ns(envoys[m]), cpu_ns(t.gateway_pids)) for m, t in targets.items()}
            time.sleep(args.idle)
            for m, t in targets.items():
                e = (cpu_ns(envoys[m]) - before[m][0]) / args.idle / 1e6
                g = (cpu_ns(t.gateway_pids) - before[m][1]) / args.idle / 1e6
                print(f"  {m:13s} Envoy {e:6.2f}  ext_proc {g:6.2f}")
        print(
            "\nInside the gateway Envoy (its access log clock, medians, µs): req = first request"
            " byte in -> first byte upstream; up = upstream's first response byte; relay ="
            " -> first byte to the client; ttfb = req + up + relay"
        )
        for kind in ("stream", "json-idle", "json", "stream-c8"):
            for m, t in targets.items():
                got_t = hot_path.timings(t, kind)
                if got_t:
                    print(
                        f"  {kind:6s} {m:13s} "
                        + "  ".join(
                            f"{f} {got_t.get(f, float('nan')):7.0f}" for f in hot_path.TIMING_FIELDS
                        )
                    )
        if SHED:
            print(f"shed by the sidecar (503 sidecar_overloaded) and retried: {SHED}")
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
