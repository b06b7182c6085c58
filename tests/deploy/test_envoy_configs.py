"""Every Envoy configuration the project ships is what render-envoy prints, and the real
Envoy accepts it."""

from __future__ import annotations

from pathlib import Path

from . import contract
from .helpers import (
    envoy_validate,
    k8s_envoy_config,
    listen_port,
    render,
    sidecar_endpoints,
    upstream_address,
)


def test_compose_envoy_config_is_the_rendered_one() -> None:
    assert contract.COMPOSE_ENVOY_FILE.read_text() == render(contract.COMPOSE_RENDER_ARGS)


def test_k8s_configmap_envoy_config_is_the_rendered_one() -> None:
    assert k8s_envoy_config() == render(contract.K8S_RENDER_ARGS)


def test_envoy_accepts_every_shipped_config(tmp_path: Path) -> None:
    envoy_validate(contract.COMPOSE_ENVOY_FILE.read_text(), tmp_path, "compose")
    envoy_validate(k8s_envoy_config(), tmp_path, "k8s-configmap")
    envoy_validate((contract.ROOT / "envoy" / "envoy.yaml").read_text(), tmp_path, "envoy-dir")


def test_envoy_reaches_the_sidecar_on_localhost_in_every_deployment() -> None:
    # compose: Envoy shares the sidecar's network namespace; k8s: same pod.
    expected = [("127.0.0.1", port) for port in contract.SIDECAR_PORTS]
    for text in (contract.COMPOSE_ENVOY_FILE.read_text(), k8s_envoy_config()):
        assert sidecar_endpoints(text) == expected
        assert listen_port(text) == contract.ENVOY_LISTEN_PORT
        assert upstream_address(text) == ("fake-provider", contract.FAKE_PROVIDER_PORT)
