"""What the ``decided`` guard (an RBAC filter on the policy filter's metadata) costs Envoy.

    python bench/guard_overhead.py [--requests 20000] [--rounds 4] [--connections 8]

One Envoy, two listeners with the same chain but for the guard: a ``set_metadata`` filter
puts the decision's key in the ``policy_sidecar`` namespace (what the policy filter's
answer does), then, on one listener only, the guard (`envoy.guard.decided_guard`, as
render-envoy writes it), then the router answering a ``direct_response``. No sidecar,
no upstream: only the guard's per-request work differs. wrk runs a fixed number of
requests on each listener in turn (A, B, A, B, ...); Envoy's CPU per request is read
from /proc (user + system) over each run. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from policy_sidecar.cli.launcher import envoy_binary, free_port
from policy_sidecar.envoy.guard import REQUEST_ID_KEY, decided_guard

_SET_METADATA = "type.googleapis.com/envoy.extensions.filters.http.set_metadata.v3.Config"
_HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def listener(name: str, port: int, *, guarded: bool) -> dict[str, Any]:
    decided = {
        "name": "envoy.filters.http.set_metadata",
        "typed_config": {
            "@type": _SET_METADATA,
            "metadata": [{"metadata_namespace": "policy_sidecar", "value": {REQUEST_ID_KEY: "r"}}],
        },
    }
    filters = [decided, *([decided_guard()] if guarded else [])]
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}})
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": _HCM,
                            "stat_prefix": name,
                            "route_config": {
                                "virtual_hosts": [
                                    {"name": "all", "domains": ["*"], "routes": [route]}
                                ]
                            },
                            "http_filters": filters,
                        },
                    }
                ]
            }
        ],
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(pid: int, port: int, requests: int, connections: int) -> float:
    """Envoy CPU microseconds per request over one wrk run of about ``requests``."""
    before = cpu_seconds(pid)
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    # One wrk thread: its request count is the run's.
    script.write_text(
        "local n = 0\nrequest = function() n = n + 1\n"
        f"  if n > {requests} then wrk.thread:stop() end\n  return wrk.request() end\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", "-d60s", "-s", str(script), f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    done = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    return (cpu_seconds(pid) - before) / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    plain, guarded, admin = free_port(), free_port(), free_port()
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                listener("plain", plain, guarded=False),
                listener("guarded", guarded, guarded=True),
            ]
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "envoy.json"
        path.write_text(json.dumps(config))
        envoy = subprocess.Popen(
            [envoy_binary(), "-c", str(path), "--concurrency", "1", "-l", "error",
             "--base-id", str(admin)],
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            for port in (plain, guarded):  # the guard refuses nothing here: both answer 200
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    assert r.status == 200
            results: dict[str, list[float]] = {"plain": [], "guarded": []}
            for _ in range(args.rounds):
                for name, port in (("plain", plain), ("guarded", guarded)):
                    results[name].append(run(envoy.pid, port, args.requests, args.connections))
        finally:
            envoy.terminate()
            envoy.wait()
    for name, values in results.items():
        print(f"{name:8} Envoy CPU µs/request: median {statistics.median(values):.2f}"
              f"  runs {', '.join(f'{v:.2f}' for v in values)}")  # fmt: skip
    diff = statistics.median(results["guarded"]) - statistics.median(results["plain"])
    print(f"guard: {diff:+.2f} µs/request; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
