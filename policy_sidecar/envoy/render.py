"""Renders the Envoy configuration template shipped with the package."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from importlib import resources
from string import Template

from policy_sidecar.envoy.local_reply import CLIENT_HEADER_LIMIT, HEADER_ROOM, local_reply_config


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
    # Extra upstream clusters a model deployment can be routed to: name -> (host, port).
    routes: tuple[tuple[str, str, int], ...] = ()
    # The CDS file of the provider accounts' clusters (written by the sidecar; it must
    # exist when Envoy starts). None: no dynamic clusters.
    cds_path: str | None = None


def render_envoy_config(options: EnvoyOptions) -> str:
    if not options.sidecar_ports:
        raise ValueError("at least one sidecar port is needed")
    names = [name for name, _, _ in options.routes]
    if "upstream" in names or "policy_sidecar" in names or len(set(names)) != len(names):
        raise ValueError("route cluster names must be distinct and not upstream/policy_sidecar")
    template = Template(resources.files(__package__).joinpath("envoy.yaml").read_text())
    endpoints = "\n".join(
        f"        - endpoint:\n"
        f"            address:\n"
        f"              socket_address: {{ address: {options.sidecar_host}, port_value: {port} }}"
        for port in options.sidecar_ports
    )
    return template.substitute(
        admin_port=options.admin_port,
        listen_address=options.listen_address,
        listen_port=options.listen_port,
        buffer_limit_bytes=options.buffer_limit_bytes,
        message_timeout=f"{options.message_timeout_ms / 1000:.3f}s",
        sidecar_endpoints=endpoints,
        max_headers_count=CLIENT_HEADER_LIMIT + HEADER_ROOM,
        local_reply_config=local_reply_config(indent=12),
        dynamic_resources=_dynamic_resources(options.cds_path),
        upstream_clusters="\n".join(
            _cluster(name, host, port, options.buffer_limit_bytes)
            for name, host, port in (
                ("upstream", options.upstream_host, options.upstream_port),
                *options.routes,
            )
        ),
    )


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
        "node: { id: policy-sidecar, cluster: policy-sidecar }\n"
        "dynamic_resources:\n"
        "  cds_config:\n"
        "    resource_api_version: V3\n"
        "    path_config_source:\n"
        f"      path: {json.dumps(cds_path)}\n"
        f"      watched_directory: {{ path: {json.dumps(directory)} }}\n"
    )
