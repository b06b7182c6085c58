"""Renders the Envoy configuration template shipped with the package."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

import yaml

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.envoy.access_log import access_logs_yaml, capture_lua
from policy_sidecar.envoy.guard import decided_guard
from policy_sidecar.envoy.local_reply import CLIENT_HEADER_LIMIT, HEADER_ROOM, local_reply_config
from policy_sidecar.envoy.upstreams import (
    SYSTEM_CA,
    codec_filter,
    render_account_clusters,
    render_fallback_clusters,
    strip_internal_headers,
)

# Where the shipped configs mount the provider keys (one SDS file per account).
CREDENTIALS_DIR = "/etc/envoy/credentials"
# Where the shipped configs write the access log the sidecar reads usage from: a volume
# both containers mount (docs/envoy.md, "Usage capture").
ACCESS_LOG_DIR = "/var/lib/policy-sidecar/access-log"

# Every route retries what never reached the provider or what it refused before
# answering (connect failure, reset, 429, 503): to another host, the next priority
# first, after the provider's Retry-After. Never once the response started (Envoy does
# not retry after headers went downstream), and no per-try timeout that would cut a
# long stream: only an idle timeout per attempt.
RETRY_POLICY: dict[str, Any] = {
    "retry_on": "connect-failure,reset,retriable-status-codes",
    "retriable_status_codes": [429, 503],
    "num_retries": 2,
    "per_try_idle_timeout": "120s",
    "retry_host_predicate": [
        {
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": {
                "@type": "type.googleapis.com/"
                "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
            },
        }
    ],
    "host_selection_retry_max_attempts": 3,
    "retry_priority": {
        "name": "envoy.retry_priorities.previous_priorities",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
            "update_frequency": 1,
        },
    },
    "retry_back_off": {"base_interval": "0.25s", "max_interval": "2s"},
    "rate_limited_retry_back_off": {
        "reset_headers": [{"name": "retry-after", "format": "SECONDS"}],
        "max_interval": "10s",
    },
}


# The policy_sidecar cluster's load balancer (docs/envoy.md, "Several worker processes").
# Round robin alternated the streams over the workers even one request at a time, so
# every request met a worker that had idled a whole cycle (cold caches, a deep wake-up:
# BENCHMARKS.md, "One warm worker at low load"). Least request with unequal weights is
# an EDF schedule over weight / (active streams + 1) ** bias, the active count read at
# each pick: with none in flight the first worker gets 16 streams for each one another
# gets, with one still in flight (closing) 4, with three or more the others (which share
# evenly among themselves) are preferred. A larger bias made the spread at load no
# better and a stale pick costlier; and Envoy's EDF clock is a double that only grows by
# (active + 1) ** bias / weight a pick, so a large bias after an overload would round
# an idle first worker's 1/16 steps away.
SIDECAR_FIRST_WEIGHT = 16
SIDECAR_ACTIVE_REQUEST_BIAS = 2.0
LEAST_REQUEST = (
    "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"
)


def sidecar_load_balancing() -> dict[str, Any]:
    return {
        "policies": [
            {
                "typed_extension_config": {
                    "name": "envoy.load_balancing_policies.least_request",
                    "typed_config": {
                        "@type": LEAST_REQUEST,
                        "active_request_bias": {
                            "default_value": SIDECAR_ACTIVE_REQUEST_BIAS,
                            "runtime_key": "policy_sidecar.active_request_bias",
                        },
                    },
                }
            }
        ]
    }


def sidecar_weights(count: int) -> list[int]:
    """The first worker heaviest, the others equal (they share the load past it)."""
    return [SIDECAR_FIRST_WEIGHT] + [1] * (count - 1)


# The upload routes (RE2, any case: the sidecar matches them case-insensitively too; a
# spelling this misses is held to the ordinary limit, a 413, never a bypass).
UPLOAD_PATHS = "(?i)/v1/(audio/(transcriptions|translations)|images/edits)/?"


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    listen_port: int
    admin_port: int
    upstream_port: int
    sidecar_ports: tuple[int, ...]
    listen_address: str = "127.0.0.1"
    upstream_host: str = "127.0.0.1"
    sidecar_host: str = "127.0.0.1"
    message_timeout_ms: int = 2000
    buffer_limit_bytes: int = 10 * 1024 * 1024
    # Upload routes (audio transcriptions and translations, image edits): the provider
    # takes files up to 25 MB, and the policy filter reads the whole form.
    upload_buffer_limit_bytes: int = 26 * 1024 * 1024
    # Extra upstream clusters a model deployment can be routed to: name -> (host, port).
    routes: tuple[tuple[str, str, int], ...] = ()
    # The CDS file of the provider accounts' clusters (written by the sidecar; it must
    # exist when Envoy starts). None: no dynamic clusters.
    cds_path: str | None = None
    # Provider accounts: one TLS cluster each, the key injected from credentials_dir.
    accounts: tuple[ProviderAccount, ...] = ()
    credentials_dir: str = CREDENTIALS_DIR
    system_ca: str = SYSTEM_CA
    # Accounts tried in order, one cluster each (a model's route names the group).
    fallback_groups: tuple[FallbackGroup, ...] = ()
    # The directory of the per-worker access log files (the sidecar's --access-log-dir).
    access_log_dir: str = ACCESS_LOG_DIR


def render_envoy_config(options: EnvoyOptions) -> str:
    if not options.sidecar_ports:
        raise ValueError("at least one sidecar port is needed")
    names = [name for name, _, _ in options.routes] + [a.cluster for a in options.accounts]
    names += [g.name for g in options.fallback_groups]
    if "upstream" in names or "policy_sidecar" in names or len(set(names)) != len(names):
        raise ValueError("route cluster names must be distinct and not upstream/policy_sidecar")
    template = Template(resources.files(__package__).joinpath("envoy.yaml").read_text())
    endpoints = "\n".join(
        f"        - load_balancing_weight: {weight}\n"
        f"          endpoint:\n"
        f"            address:\n"
        f"              socket_address: {{ address: {options.sidecar_host}, port_value: {port} }}"
        for port, weight in zip(
            options.sidecar_ports, sidecar_weights(len(options.sidecar_ports)), strict=True
        )
    )
    return template.substitute(
        admin_port=options.admin_port,
        listen_address=options.listen_address,
        listen_port=options.listen_port,
        buffer_limit_bytes=options.buffer_limit_bytes,
        upload_buffer_limit_bytes=options.upload_buffer_limit_bytes,
        upload_paths=UPLOAD_PATHS,
        message_timeout=f"{options.message_timeout_ms / 1000:.3f}s",
        sidecar_endpoints=endpoints,
        sidecar_load_balancing=json.dumps(sidecar_load_balancing()),
        max_headers_count=CLIENT_HEADER_LIMIT + HEADER_ROOM,
        access_logs=access_logs_yaml(options.access_log_dir, options.sidecar_ports, indent=10),
        decided_guard=json.dumps(decided_guard()),
        capture_lua="\n".join(" " * 18 + line for line in capture_lua().splitlines()),
        local_reply_config=local_reply_config(indent=12),
        dynamic_resources=_dynamic_resources(options.cds_path),
        retry_policy=json.dumps(RETRY_POLICY),
        upstream_http_filters=json.dumps([strip_internal_headers(), codec_filter()]),
        upstream_clusters="\n".join(
            [
                _cluster(name, host, port, options.buffer_limit_bytes)
                for name, host, port in (
                    ("upstream", options.upstream_host, options.upstream_port),
                    *options.routes,
                )
            ]
            + [
                _account_yaml(cluster, options.buffer_limit_bytes)
                for cluster in [
                    *render_account_clusters(
                        options.accounts,
                        credentials_dir=options.credentials_dir,
                        system_ca=options.system_ca,
                    ),
                    *render_fallback_clusters(
                        options.fallback_groups,
                        options.accounts,
                        credentials_dir=options.credentials_dir,
                    ),
                ]
            ]
        ),
    )


def _account_yaml(cluster: dict[str, Any], buffer_limit: int) -> str:
    static = {k: v for k, v in cluster.items() if k != "@type"}
    static["per_connection_buffer_limit_bytes"] = buffer_limit
    text = yaml.safe_dump([static], sort_keys=False, default_flow_style=False, width=100)
    return "\n".join("  " + line for line in text.rstrip("\n").splitlines())


def _cluster(name: str, host: str, port: int, buffer_limit: int) -> str:
    return (
        f"  - name: {name}\n"
        f"    type: STRICT_DNS\n"
        f"    connect_timeout: 2s\n"
        f"    per_connection_buffer_limit_bytes: {buffer_limit}\n"
        f"    load_assignment:\n"
        f"      cluster_name: {name}\n"
        f"      endpoints:\n"
        f"      - lb_endpoints:\n"
        f"        - endpoint:\n"
        f"            address:\n"
        f"              socket_address: {{ address: {host}, port_value: {port} }}"
    )


def _dynamic_resources(cds_path: str | None) -> str:
    """File-based CDS: Envoy reloads the file when one is moved into its directory (the
    sidecar writes it by rename), so an account added at run time needs no restart."""
    if cds_path is None:
        return ""
    directory = posixpath.dirname(cds_path) or "."
    return (
        "dynamic_resources:\n"
        "  cds_config:\n"
        "    resource_api_version: V3\n"
        "    path_config_source:\n"
        f"      path: {json.dumps(cds_path)}\n"
        f"      watched_directory: {{ path: {json.dumps(directory)} }}\n"
    )
