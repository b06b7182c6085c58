"""The floor of a Python ext_proc's request path: how many synchronous messages, at one
connection, in one run.

    cd /tmp && PYTHONPATH=<checkout> python <checkout>/bench/round_trips.py --rounds 4

Envoy alone and ``bench/trivial_extproc.py`` (answers CONTINUE, no work) behind the
product's rendered Envoy config (as ``hot_path.py``'s trivial row), with only the trivial
filter's processing mode changed:

- ``t4``: request headers, buffered request body, response headers, streamed response
  body (``hot_path.py``'s trivial reference: four messages for a JSON request);
- ``t2``: request headers and buffered body (the policy filter's two messages);
- ``t1``: the buffered body only (headers SKIP: one message; the body's answer can no
  longer change the request headers, docs/envoy.md);
- ``fd``: headers SEND, body FULL_DUPLEX_STREAMED with
  ``send_body_without_waiting_for_header_response``: Envoy sends the body right behind
  the headers, the server answers the headers once it has read the body, then gives
  the body back (two messages each way, one wait);

each unpinned and, with ``--pinned``, also with every process pinned to a CPU (as the
sidecar's workers pin themselves, ``POLICY_SIDECAR_PIN_WORKERS``). wrk at one
connection, ``--duration`` seconds per target, targets alternating within each round;
prints the p50 per round and the median added over Envoy alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import hot_path as hp

_SKIPPED = {"response_header_mode": "SKIP", "response_body_mode": "NONE"}
VARIANTS: dict[str, dict[str, Any]] = {
    "t4": dict(hp.TRIVIAL_MODE),
    "t2": {**hp.TRIVIAL_MODE, **_SKIPPED},
    "t1": {**hp.TRIVIAL_MODE, **_SKIPPED, "request_header_mode": "SKIP"},
    "fd": {
        **hp.TRIVIAL_MODE,
        **_SKIPPED,
        "request_body_mode": "FULL_DUPLEX_STREAMED",
        "request_trailer_mode": "SEND",
    },
}


def processing_mode(variant: str) -> Callable[[dict[str, Any]], None]:
    def transform(config: dict[str, Any]) -> None:
        for filters in hp.http_filter_lists(config):
            for f in filters:
                if f.get("name") == "trivial":
                    f["typed_config"]["processing_mode"] = VARIANTS[variant]
                    if variant == "fd":
                        typed = f["typed_config"]
                        typed["send_body_without_waiting_for_header_response"] = True

    return transform


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--variants", default="t4,t2,t1,fd")
    parser.add_argument("--pinned", action="store_true", help="also each variant pinned")
    parser.add_argument(
        "--h2", action="store_true", help="also each variant served by extproc.h2grpc"
    )
    a = parser.parse_args()
    args = argparse.Namespace(workers=2, sidecar_env={}, upstream="plain", trivial_args=[])
    bench = hp.Bench(args, Path(tempfile.mkdtemp(prefix="ps-rt-")))
    try:
        bench.start_upstream()
        targets = {"envoy": bench.target("envoy")}
        for variant in a.variants.split(","):
            for pinned in (False, True) if a.pinned else (False,):
                for served in ("grpc", "h2") if a.h2 else ("grpc",):
                    args.trivial_args = ["--full-duplex"] if variant == "fd" else []
                    args.trivial_args += ["--h2"] if served == "h2" else []
                    mode = "trivial-pinned" if pinned else "trivial"
                    name = (
                        f"{variant}{'-pinned' if pinned else ''}{'-h2' if served == 'h2' else ''}"
                    )
                    targets[name] = bench.target(mode, processing_mode(variant))
        for t in targets.values():
            warm = hp.wrk(t, connections=1, duration=1, workdir=bench.workdir)
            if warm["non2xx"]:
                raise SystemExit(f"{t.mode}: {warm['non2xx']:.0f} answers were not 2xx")
        p50s: dict[str, list[float]] = {name: [] for name in targets}
        for i in range(a.rounds):
            for name, t in targets.items():
                p50s[name].append(
                    hp.wrk(t, connections=1, duration=a.duration, workdir=bench.workdir)["p50_ms"]
                )
            print(
                f"round {i + 1}: " + "  ".join(f"{name} {v[-1]:.2f}" for name, v in p50s.items()),
                flush=True,
            )
        base = statistics.median(p50s["envoy"])
        print(f"\nmedians of {a.rounds} rounds, c=1 p50 (added over Envoy alone):")
        for name, v in p50s.items():
            m = statistics.median(v)
            print(f"  {name:10s} {m:.2f} ms ({m - base:+.2f})")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
