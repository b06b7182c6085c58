"""Envoy + sidecar vs Envoy alone: throughput, latency, and streaming cost.

    python bench/extproc_overhead.py [--workers 2] [--duration 10] [--connections 16]

Upstreams: a static upstream (an Envoy ``direct_response`` serving a realistic chat
completion with usage, so the upstream is never the bottleneck) for the HTTP load, and
the package's fake provider for the 200-chunk stream. Load: wrk on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from policy_sidecar.cli.launcher import Stack, envoy_binary, free_port, new_stack
from policy_sidecar.fakeprovider.samples import build_response
from policy_sidecar.providers import Route, Usage

KEY = "ps-bench-key-0123456789abcdef"
BODY = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a terse assistant. " * 8},
        {"role": "user", "content": "Summarise the benefits of an ext_proc sidecar. " * 14},
    ],
    "max_tokens": 64,
}
CONFIG = f"""
version: 1
applications:
  - id: bench
    org_id: bench-org
    keys: [{{environment: prod, key: {KEY}}}]
models:
  - {{name: gpt-4o-mini, provider: openai, input_price_per_mtok: 0.15, output_price_per_mtok: 0.6}}
# Every policy type, none denying.
policies:
  - {{id: p1, name: models, type: model_allowlist, config: {{models: ["gpt-4o*"]}}}}
  - {{id: p2, name: size, type: request_size, config: {{max_bytes: 1048576}}}}
  - {{id: p3, name: rate, type: rate_limit, config: {{requests: 1000000000, window: 1m, key: app}}}}
  - id: p4
    name: tokens
    type: token_limit
    config: {{limit: 1000000000000, window: 1d, count: total, key: app_model}}
  - {{id: p5, name: cel, type: custom_cel, config: {{pre_check_expression: "max_tokens >= -1"}}}}
"""


def static_upstream_config(port: int, admin_port: int) -> str:
    usage = Usage(prompt_tokens=240, completion_tokens=64, total_tokens=304)
    body = build_response(Route("openai", "chat"), BODY, usage).body.decode()
    return yaml.safe_dump(
        {
            "admin": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
            },
            "static_resources": {
                "listeners": [
                    {
                        "name": "static",
                        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                        "filter_chains": [
                            {
                                "filters": [
                                    {
                                        "name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                            "stat_prefix": "static",
                                            "route_config": {
                                                "virtual_hosts": [
                                                    {
                                                        "name": "s",
                                                        "domains": ["*"],
                                                        "routes": [
                                                            {
                                                                "match": {"prefix": "/"},
                                                                "direct_response": {
                                                                    "status": 200,
                                                                    "body": {"inline_string": body},
                                                                },
                                                            }
                                                        ],
                                                        "response_headers_to_add": [
                                                            {
                                                                "header": {
                                                                    "key": "content-type",
                                                                    "value": "application/json",
                                                                }
                                                            }
                                                        ],
                                                    }
                                                ]
                                            },
                                            "http_filters": [
                                                {
                                                    "name": "envoy.filters.http.router",
                                                    "typed_config": {
                                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                    },
                                                }
                                            ],
                                        },
                                    }
                                ]
                            }
                        ],
                    }
                ]
            },
        }
    )


def plain_envoy_config(with_sidecar: str, listen_port: int, admin_port: int) -> str:
    """The same Envoy config without the sidecar's filters (ext_proc, Lua capture) and
    without the access log the sidecar reads."""
    config = yaml.safe_load(with_sidecar)
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listen_port
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    ours = ("policy", "usage", "capture")
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] not in ours]
    hcm.pop("access_log", None)
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    return yaml.safe_dump(config)


def wrk(
    url: str, *, connections: int, duration: int, workdir: Path, key: str = KEY
) -> dict[str, float]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        for p in [pid, *children(pid)]:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError):
                pass
    return total


def children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids] + [g for k in kids for g in children(int(k))]


async def stream_once(
    session: aiohttp.ClientSession, url: str, chunks: int
) -> tuple[float, float, int]:
    body = {**BODY, "stream": True, "max_tokens": chunks, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = 0.0
    n = 0
    async with session.post(url, json=body, headers={"authorization": f"Bearer {KEY}"}) as resp:
        assert resp.status == 200, await resp.text()
        async for _line in resp.content:
            if not first:
                first = time.perf_counter() - start
            n += 1
    return first, time.perf_counter() - start, n


async def stream_bench(url: str, *, chunks: int, count: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            await stream_once(session, url, chunks)
        results = [await stream_once(session, url, chunks) for _ in range(count)]
    ttfts = [r[0] * 1000 for r in results]
    totals = [r[1] * 1000 for r in results]
    return {"ttft_p50_ms": statistics.median(ttfts), "total_p50_ms": statistics.median(totals)}


def start(stack: Stack, name: str, config: str, concurrency: int) -> None:
    path = stack.workdir / f"{name}.yaml"
    path.write_text(config)
    proc = stack.start_process(
        name,
        [
            envoy_binary(),
            "-c",
            str(path),
            "--concurrency",
            str(concurrency),
            "-l",
            "error",
            "--base-id",
            str(free_port()),
        ],
    )
    time.sleep(1.0)
    if proc.popen.poll() is not None:
        raise SystemExit(f"{name} failed:\n{proc.log_tail()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--stream-chunks", type=int, default=200)
    parser.add_argument("--streams", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="ps-bench-"))
    config = workdir / "standalone.yaml"
    config.write_text(CONFIG)
    stack = new_stack(workdir, workers=args.workers)
    try:
        # Static upstream first, on the stack's upstream port.
        start(stack, "static-upstream", static_upstream_config(stack.upstream_port, free_port()), 1)
        stack.start_sidecar(config, env={"POLICY_SIDECAR_LOG_LEVEL": "WARNING"})
        stack.start_envoy(args.envoy_concurrency)
        plain_port = free_port()
        start(
            stack,
            "envoy-plain",
            plain_envoy_config((workdir / "envoy.yaml").read_text(), plain_port, free_port()),
            args.envoy_concurrency,
        )
        via = f"{stack.url}/v1/chat/completions"
        plain = f"http://127.0.0.1:{plain_port}/v1/chat/completions"
        sidecar_pids = [stack.processes["sidecar"].popen.pid]
        envoy_pids = {
            "envoy alone": [stack.processes["envoy-plain"].popen.pid],
            "envoy + sidecar": [stack.processes["envoy"].popen.pid],
        }

        print(
            f"machine: {os.cpu_count()} cores; sidecar workers {args.workers}; "
            f"envoy concurrency {args.envoy_concurrency}; body {len(json.dumps(BODY))} bytes"
        )
        results = {}
        for label, url in (("envoy alone", plain), ("envoy + sidecar", via)):
            wrk(url, connections=args.connections, duration=2, workdir=workdir)  # warm-up
            cpu0, envoy0 = cpu_seconds(sidecar_pids), cpu_seconds(envoy_pids[label])
            loaded = wrk(url, connections=args.connections, duration=args.duration, workdir=workdir)
            cpu = cpu_seconds(sidecar_pids) - cpu0
            envoy_cpu = cpu_seconds(envoy_pids[label]) - envoy0
            unloaded = wrk(url, connections=1, duration=max(3, args.duration // 2), workdir=workdir)
            results[label] = (loaded, unloaded)
            per_req = cpu / (loaded["rps"] * args.duration) * 1e6 if label != "envoy alone" else 0
            print(
                f"{label:16s} {loaded['rps']:8.0f} req/s  p50 {loaded['p50_ms']:.2f} ms  "
                f"p99 {loaded['p99_ms']:.2f} ms  (c={args.connections}; non-2xx {loaded['non2xx']:.0f})"
                f" | unloaded p50 {unloaded['p50_ms']:.3f} ms p99 {unloaded['p99_ms']:.3f} ms"
                + (f" | sidecar CPU {per_req:.0f} us/request" if per_req else "")
                + f" | envoy CPU {envoy_cpu / (loaded['rps'] * args.duration) * 1e6:.0f} us/request"
            )
        added = results["envoy + sidecar"][1]["p50_ms"] - results["envoy alone"][1]["p50_ms"]
        print(f"added latency, unloaded p50: {added:.3f} ms")

        # Streams: the fake provider replaces the static upstream on the same port.
        stack.processes.pop("static-upstream").stop()
        stack.start_fake_provider()
        stream_results = {}
        for label, url in (("envoy alone", plain), ("envoy + sidecar", via)):
            cpu0, envoy0 = cpu_seconds(sidecar_pids), cpu_seconds(envoy_pids[label])
            r = asyncio.run(stream_bench(url, chunks=args.stream_chunks, count=args.streams))
            r["cpu_ms"] = (cpu_seconds(sidecar_pids) - cpu0) / (args.streams + 3) * 1000
            r["envoy_ms"] = (cpu_seconds(envoy_pids[label]) - envoy0) / (args.streams + 3) * 1000
            stream_results[label] = r
            print(
                f"{label:16s} {args.stream_chunks}-chunk stream: TTFT p50 {r['ttft_p50_ms']:.2f} ms, "
                f"total p50 {r['total_p50_ms']:.2f} ms"
                + (f", sidecar CPU {r['cpu_ms']:.2f} ms/stream" if label != "envoy alone" else "")
                + f", envoy CPU {r['envoy_ms']:.2f} ms/stream"
            )
        a, b = stream_results["envoy alone"], stream_results["envoy + sidecar"]
        print(
            f"stream: added TTFT {b['ttft_p50_ms'] - a['ttft_p50_ms']:.3f} ms, added per chunk "
            f"{(b['total_p50_ms'] - a['total_p50_ms'] - (b['ttft_p50_ms'] - a['ttft_p50_ms'])) / args.stream_chunks * 1000:.1f} us, "
            f"sidecar CPU per chunk {b['cpu_ms'] / args.stream_chunks * 1000:.1f} us"
        )
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
