"""The policy_sidecar cluster's load balancer, A/B in one run.

    cd /tmp && PYTHONPATH=<checkout> python <checkout>/bench/sidecar_lb.py \\
        --modes trivial,memory --variants rr,lr:16:2,w1 --rounds 6

Starts Envoy alone and, for each mode and variant, the target ``hot_path.py`` starts (the
product's rendered Envoy config and launcher) with only the ext_proc cluster's load
balancing changed: ``rr`` round robin (before), ``lr:W:B`` least request with the first
worker's weight W (the others 1) and ``active_request_bias`` B (``lr:16:2`` is what
render.py ships), ``w1`` one sidecar worker. Then, ``--rounds`` times, every target in
turn: wrk at 16 connections, then at 1, ``--duration`` seconds each. Alternating the
targets round by round puts them all under the same noise of a shared machine. Prints per
round and as medians: req/s at c=16, p50 and p99 at c=1, and the busiest worker's share of
the ext_proc streams at each load (Envoy's ``rq_total`` per endpoint: 50 % is an even
split of two workers). ``--extra 'NAME=MODE/VARIANT@PYTHONPATH;POLICY_SIDECAR_X=V,...'``
adds a target with another checkout's code or sidecar environment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import hot_path as hp


def load_balancing(variant: str) -> Callable[[dict[str, Any]], None]:
    def transform(config: dict[str, Any]) -> None:
        for cluster in config["static_resources"]["clusters"]:
            if cluster["name"] != "policy_sidecar":
                continue
            endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
            if variant in ("rr", "w1"):
                cluster.pop("load_balancing_policy", None)
                cluster["lb_policy"] = "ROUND_ROBIN"
                for endpoint in endpoints:
                    endpoint.pop("load_balancing_weight", None)
                return
            _, weight, bias = variant.split(":")
            [policy] = cluster["load_balancing_policy"]["policies"]
            typed = policy["typed_extension_config"]["typed_config"]
            typed["active_request_bias"]["default_value"] = float(bias)
            for i, endpoint in enumerate(endpoints):
                endpoint["load_balancing_weight"] = int(weight) if i == 0 else 1

    return transform


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--variants", default="rr,lr:16:2,w1")
    parser.add_argument("--modes", default="trivial,memory")
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--extra", action="append", default=[])
    a = parser.parse_args()
    args = argparse.Namespace(workers=2, sidecar_env={}, upstream="plain")
    bench = hp.Bench(args, Path(tempfile.mkdtemp(prefix="ps-lb-")))
    print(f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    try:
        bench.start_upstream()
        targets = {"envoy": bench.target("envoy")}
        variants = [v for v in a.variants.split(",") if v]
        for mode in [m for m in a.modes.split(",") if m]:
            for v in variants:
                args.workers = 1 if v == "w1" else 2
                targets[f"{mode}/{v}"] = bench.target(mode, load_balancing(v))
        for spec in a.extra:
            name, _, rest = spec.partition("=")
            rest, _, env = rest.partition(";")
            rest, _, code = rest.partition("@")
            mode, v = rest.split("/")
            args.workers = 1 if v == "w1" else 2
            args.sidecar_env = dict(e.split("=", 1) for e in env.split(",") if e)
            saved = os.environ.get("PYTHONPATH", "")
            if code:
                os.environ["PYTHONPATH"] = code
            try:
                targets[name] = bench.target(mode, load_balancing(v))
            finally:
                os.environ["PYTHONPATH"] = saved
            args.sidecar_env = {}
        results: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
        for t in targets.values():
            hp.wrk(t, connections=4, duration=1, workdir=bench.workdir)
        for i in range(a.rounds):
            for name, t in targets.items():
                s0 = hp.worker_counts(t)
                busy = hp.wrk(t, connections=16, duration=a.duration, workdir=bench.workdir)
                s1 = hp.worker_counts(t)
                one = hp.wrk(t, connections=1, duration=a.duration, workdir=bench.workdir)
                s2 = hp.worker_counts(t)
                r = {
                    "rps": busy["rps"],
                    "p50": one["p50_ms"],
                    "p99": one["p99_ms"],
                    "c16": hp.top_share(s0, s1),
                    "c1": hp.top_share(s1, s2),
                }
                results[name].append(r)
                print(
                    f"round {i + 1} {name:16s} {r['rps']:6.0f} req/s  c=1 p50 {r['p50']:.2f} ms "
                    f"p99 {r['p99']:.2f}  busiest worker c=16 {r['c16']:.0%} c=1 {r['c1']:.0%}  "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        print(f"\nmedians of {a.rounds} rounds:")
        base = statistics.median(r["p50"] for r in results["envoy"])
        for name, rs in results.items():
            m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            print(
                f"  {name:16s} {m['rps']:6.0f} req/s  c=1 p50 {m['p50']:.2f} ms (added "
                f"{m['p50'] - base:.2f})  p99 {m['p99']:.2f}  busiest worker c=16 "
                f"{m['c16']:.0%} c=1 {m['c1']:.0%}"
            )
        for v in variants:
            if f"memory/{v}" in results and f"trivial/{v}" in results:
                mem, triv = results[f"memory/{v}"], results[f"trivial/{v}"]
                ratio = statistics.median(
                    m["rps"] / t["rps"] for m, t in zip(mem, triv, strict=True)
                )
                print(f"  {v:10s} memory / trivial throughput, median of rounds: {ratio:.0%}")
        print(f"load average {os.getloadavg()[0]:.1f} at end")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
