"""Loading the deploy files and running the CLI's own parser over their commands."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from policy_sidecar.cli.launcher import envoy_binary
from policy_sidecar.cli.main import build_parser
from policy_sidecar.envoy.render import ACCESS_LOG_DIR

from . import contract

ENV_NAME = re.compile(r"POLICY_SIDECAR_[A-Z0-9_]+")


@functools.cache
def compose() -> dict[str, Any]:
    """Parsed once per session; callers must not modify it."""
    data: dict[str, Any] = yaml.safe_load(contract.COMPOSE_FILE.read_text())
    return data


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


@functools.cache
def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in deploy/k8s (not the kustomization itself); parsed once
    per session, callers must not modify it."""
    docs = []
    for path in sorted(contract.K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Containers (and init containers) of a Deployment or Job."""
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def workloads() -> list[dict[str, Any]]:
    return [d for _, d in k8s_documents() if d["kind"] in ("Deployment", "Job")]


def subcommands() -> set[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return set(actions[0].choices)


def parse_cli(argv: list[str]) -> argparse.Namespace:
    """Parse argv with the real `policy-sidecar` parser; a usage error fails the test."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"policy-sidecar {' '.join(argv)}: {err.getvalue()}") from exc


def render(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = parse_cli(argv)
        assert args.func(args) == 0
    return out.getvalue()


def envoy_validate(config_text: str, tmp_path: Path, name: str) -> None:
    # Envoy opens the access log files when it loads a config: the shipped directory
    # (a volume in the deployments) is replaced by a temporary one.
    access_logs = tmp_path / "access-log"
    access_logs.mkdir(exist_ok=True)
    config_text = config_text.replace(ACCESS_LOG_DIR, str(access_logs))
    path = tmp_path / f"{name}.yaml"
    path.write_text(config_text)
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name}: {output}"
    assert "OK" in output, output


def sidecar_endpoints(config_text: str) -> list[tuple[str, int]]:
    config = yaml.safe_load(config_text)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    lb = clusters["policy_sidecar"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    return [
        (e["endpoint"]["address"]["socket_address"]["address"],
         e["endpoint"]["address"]["socket_address"]["port_value"])
        for e in lb
    ]  # fmt: skip


def upstream_address(config_text: str, cluster: str = "upstream") -> tuple[str, int]:
    config = yaml.safe_load(config_text)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    lb = clusters[cluster]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    address = lb["endpoint"]["address"]["socket_address"]
    return address["address"], address["port_value"]


def listen_port(config_text: str) -> int:
    config = yaml.safe_load(config_text)
    port: int = config["static_resources"]["listeners"][0]["address"]["socket_address"][
        "port_value"
    ]
    return port


def code_env_vars() -> set[str]:
    """POLICY_SIDECAR_* names the package reads: literals in its source (which includes
    the variable table in settings.py, since Settings builds names from a prefix)."""
    package = contract.ROOT / "policy_sidecar"
    names: set[str] = set()
    for path in package.rglob("*.py"):
        names.update(ENV_NAME.findall(path.read_text()))
    return names


def k8s_envoy_config() -> str:
    data: str = k8s_object("ConfigMap", "policy-sidecar-envoy")["data"]["envoy.yaml"]
    return data
