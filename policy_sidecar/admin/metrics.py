"""Prometheus metrics of the admin service: names are constants, labels bounded
(method names come from the protos; codes from grpc.StatusCode)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["INVALIDATIONS_TOTAL", "REQUESTS_TOTAL", "REQUEST_SECONDS", "AdminMetrics"]

REQUESTS_TOTAL: Final = "policy_sidecar_admin_requests"
REQUEST_SECONDS: Final = "policy_sidecar_admin_request_duration_seconds"
AUTH_FAILURES_TOTAL: Final = "policy_sidecar_admin_auth_failures"
INVALIDATIONS_TOTAL: Final = "policy_sidecar_admin_invalidations"


@dataclass(frozen=True, slots=True)
class AdminMetrics:
    """One set per server; a registry of its own so several servers (tests) coexist."""

    registry: CollectorRegistry
    requests: Counter
    seconds: Histogram
    auth_failures: Counter
    invalidations: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> AdminMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                REQUESTS_TOTAL,
                "Admin API calls by method and gRPC status code.",
                ("method", "code"),
                registry=registry,
            ),
            seconds=Histogram(
                REQUEST_SECONDS,
                "Admin API call latency by method.",
                ("method",),
                registry=registry,
            ),
            auth_failures=Counter(
                AUTH_FAILURES_TOTAL,
                "Admin API calls refused: reason is unauthenticated or permission_denied.",
                ("reason",),
                registry=registry,
            ),
            invalidations=Counter(
                INVALIDATIONS_TOTAL,
                "Cache invalidations published on Redis by result: published, retried"
                " (published after a failure), failed (given up; logged).",
                ("result",),
                registry=registry,
            ),
        )
