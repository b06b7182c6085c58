"""What a fallback group adds per request, against the account's own cluster.

    python bench/fallback_overhead.py [--requests 3000] [--duration 10] [--connections 16]

One Envoy, two routes to the same TLS upstream: ``/direct`` to an account's cluster (its
credential injector), ``/group`` to a fallback group over that account and another (the
aggregate cluster, the header naming the attempt's account, one matched injector per
account, the header removed). The first account is healthy, so both make one attempt:
the difference is the group's filters. The clusters are the ones render-envoy writes.
The upstream is a second Envoy answering over TLS with a fixed body (never the
bottleneck). No sidecar: only the per-attempt work is measured.

Unloaded: sequential requests on one keep-alive connection, the two routes interleaved,
median and p99 per route. Loaded: wrk on each route in turn, twice.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import trustme

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.cli.launcher import envoy_binary, free_port
from policy_sidecar.envoy.render import RETRY_POLICY
from policy_sidecar.envoy.upstreams import (
    account_cluster,
    render_fallback_clusters,
    secret_file_text,
)

HOST = "api.openai.com"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}}],
        "usage": {"prompt_tokens": 240, "completion_tokens": 64, "total_tokens": 304},
    }
)


def listener(port: int, routes: list[dict[str, Any]], tls: dict[str, Any] | None) -> dict[str, Any]:
    chain: dict[str, Any] = {
        "filters": [
            {
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM,
                    "stat_prefix": "b",
                    "route_config": {
                        "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes}]
                    },
                    "http_filters": [
                        {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}
                    ],
                },
            }
        ]
    }
    if tls is not None:
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    return {
        "name": f"l{port}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [chain],
    }


def bootstrap(listeners: list[dict[str, Any]], clusters: list[dict[str, Any]]) -> str:
    for cluster in clusters:
        cluster.pop("@type", None)
    return json.dumps(
        {
            "node": {"id": "bench", "cluster": "bench"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": listeners, "clusters": clusters},
        }
    )


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/direct")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("envoy not ready")


def unloaded(port: int, requests: int) -> dict[str, list[float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times: dict[str, list[float]] = {"/direct": [], "/group": []}
    for i in range(requests * 2 + 200):
        path = "/direct" if i % 2 == 0 else "/group"
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - start
        assert response.status == 200, response.status
        if i >= 200:  # warm-up
            times[path].append(elapsed * 1e6)
    return times


def wrk(port: int, path: str, duration: int, connections: int) -> tuple[float, str, str]:
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
    return rps, p50, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fallback-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(work / "ca.pem"))
        cert = ca.issue_cert(HOST)
        cert.private_key_pem.write_to_path(str(work / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
        creds = work / "credentials"
        creds.mkdir()
        upstream_port, front_port = free_port(), free_port()
        tls = {
            "@type": TLS,
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(work / "cert.pem")},
                        "private_key": {"filename": str(work / "key.pem")},
                    }
                ]
            },
        }
        answer = {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": BODY}},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": "application/json"}}
            ],
        }
        accounts = []
        for name in ("openai-a", "openai-b"):
            (creds / f"{name}.yaml").write_text(secret_file_text(name, f"sk-{name}"))
            accounts.append(
                ProviderAccount(
                    name=name,
                    provider="openai",
                    base_host=HOST,
                    credential_ref=name,
                    port=upstream_port,
                    ca_file=str(work / "ca.pem"),
                    address="127.0.0.1",
                )
            )
        clusters = [account_cluster(a, str(creds)) for a in accounts]
        clusters += render_fallback_clusters(
            [FallbackGroup("openai-any", ("openai-a", "openai-b"))],
            accounts,
            credentials_dir=str(creds),
        )

        def route(prefix: str, cluster: str) -> dict[str, Any]:
            return {
                "match": {"prefix": prefix},
                "route": {
                    "cluster": cluster,
                    "auto_host_rewrite": True,
                    "retry_policy": RETRY_POLICY,
                },
            }

        configs = {
            "upstream": bootstrap([listener(upstream_port, [answer], tls)], []),
            "front": bootstrap(
                [
                    listener(
                        front_port,
                        [route("/direct", "openai-a"), route("/group", "openai-any")],
                        None,
                    )
                ],
                clusters,
            ),
        }
        for i, (name, text) in enumerate(configs.items()):
            path = work / f"{name}.json"
            path.write_text(text)
            log = open(work / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child
            procs.append(
                subprocess.Popen(
                    [
                        envoy_binary(),
                        "-c",
                        str(path),
                        "--concurrency",
                        "1",
                        "--base-id",
                        str(9000 + i + front_port),
                        "-l",
                        "error",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        wait_ready(front_port)
        times = unloaded(front_port, args.requests)
        print(f"unloaded, {args.requests} requests per route, one keep-alive connection (µs):")
        for route_path, values in times.items():
            values.sort()
            tail = values[int(len(values) * 0.99)]
            print(f"  {route_path:8} p50 {statistics.median(values):7.1f}  p99 {tail:7.1f}")
        added = statistics.median(times["/group"]) - statistics.median(times["/direct"])
        print(f"  added by the fallback group (p50): {added:.1f} µs")
        if shutil.which("wrk"):
            print(f"wrk, {args.connections} connections, {args.duration}s each:")
            for _ in range(2):
                for route_path in ("/direct", "/group"):
                    rps, p50, p99 = wrk(front_port, route_path, args.duration, args.connections)
                    print(f"  {route_path:8} {rps:9.0f} req/s  p50 {p50:>8}  p99 {p99:>8}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
