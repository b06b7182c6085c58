"""Container probes for images without curl or grpc_health_probe (stdlib + grpcio).

    python probe.py grpc 127.0.0.1:50051        # grpc.health.v1 Check == SERVING
    python probe.py get http://127.0.0.1:9901/ready
    python probe.py post 'http://127.0.0.1:9901/drain_listeners?graceful'

Exit status 0 when healthy (or the POST succeeded), 1 otherwise; one line on stderr
says why. Used by docker-compose.yml healthchecks and the Envoy preStop hook in
deploy/k8s (Envoy's admin endpoints that change state accept POST only).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

TIMEOUT_SECONDS = 3.0


def check_grpc(target: str, service: str = "") -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_SECONDS)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def check_http(url: str, method: str) -> bool:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return bool(200 <= response.status < 300)


def main(argv: Sequence[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in ("grpc", "get", "post"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, target = argv[0], argv[1]
    try:
        if kind == "grpc":
            ok = check_grpc(target, argv[2] if len(argv) == 3 else "")
        else:
            ok = check_http(target, kind.upper())
    except Exception as exc:  # any failure to connect or answer is "not healthy"
        print(f"probe {kind} {target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"probe {kind} {target}: not serving", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
