"""Renders the Envoy configuration template shipped with the package."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from string import Template


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


def render_envoy_config(options: EnvoyOptions) -> str:
    if not options.sidecar_ports:
        raise ValueError("at least one sidecar port is needed")
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
        upstream_host=options.upstream_host,
        upstream_port=options.upstream_port,
    )
