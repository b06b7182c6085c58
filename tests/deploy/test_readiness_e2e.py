"""The shipped deployment configuration really starts: `policy-sidecar migrate`, `admin`
and `serve` run as subprocesses with exactly the environment, arguments and secret
values written in docker-compose.yml and deploy/k8s/, and both long-running services
reach readiness (the same gRPC health check their healthchecks/probes use).

Substitutions, and nothing else: hosts that name a compose service or a placeholder
host (`*.example.internal`) become the local Postgres / Redis; the database name
becomes a fresh database (dropped afterwards); ports the processes *listen* on become
free ports (other tests run on this machine at the same time); a Secret mounted as a
file is written under a temporary directory standing in for the mount path.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors, sql

from policy_sidecar.cli.launcher import free_port
from tests.log_secrets import register as register_secret

from . import contract
from .helpers import compose_services, k8s_object

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

LOCAL_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
LOCAL_REDIS = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLI = [sys.executable, "-m", "policy_sidecar.cli.main"]
READY_SECONDS = 60.0


def _remote_host(host: str | None) -> bool:
    return host is not None and (host in compose_services() or host.endswith(".example.internal"))


@dataclass
class Localizer:
    """Rewrites one deployment's values to this machine (see the module docstring)."""

    database: str
    workdir: Path
    ports: dict[int, int] = field(default_factory=dict)

    def port(self, port: int) -> int:
        return self.ports.setdefault(port, free_port())

    def url(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres", "redis") or not _remote_host(
            parts.hostname
        ):
            return value
        local = urlsplit(LOCAL_DSN if parts.scheme.startswith("postgres") else LOCAL_REDIS)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{local.netloc.rpartition('@')[2]}" if userinfo else local.netloc
        path = f"/{self.database}" if parts.scheme.startswith("postgres") else parts.path
        return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))

    def ports_arg(self, text: str) -> str:
        """`--ports 50051-50052` (or a comma list) with each port replaced."""
        if "-" in text:
            first, last = (int(p) for p in text.split("-"))
            wanted = list(range(first, last + 1))
        else:
            wanted = [int(p) for p in text.split(",")]
        return ",".join(str(self.port(p)) for p in wanted)

    def argv(self, args: list[str]) -> list[str]:
        out = list(args)
        for i, arg in enumerate(out[:-1]):
            if arg == "--ports":
                out[i + 1] = self.ports_arg(out[i + 1])
        return out

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        out = {k: self.url(str(v)) for k, v in env.items()}
        for name in (
            "POLICY_SIDECAR_METRICS_PORT",
            "POLICY_SIDECAR_ADMIN_METRICS_PORT",
            "POLICY_SIDECAR_UI_PORT",
        ):
            if name in out:
                out[name] = str(self.port(int(out[name])))
        return out


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    health_port: int  # the port the healthcheck / readiness probe checks
    # An HTTP readiness probe's path (the admin's console /healthz); None: gRPC health.
    health_path: str | None = None


def _compose_services(loc: Localizer) -> tuple[dict[str, str], list[Service]]:
    services = compose_services()
    migrate_env = loc.env(services["migrate"]["environment"])
    assert services["migrate"]["command"] == ["migrate"]
    started = []
    for name in ("admin", "sidecar"):
        service = services[name]
        probe = service["healthcheck"]["test"]
        assert probe[-2] == "grpc" and probe[-1].startswith("127.0.0.1:"), probe
        started.append(
            Service(
                f"compose-{name}",
                loc.argv(service["command"]),
                loc.env(service["environment"]),
                int(probe[-1].rpartition(":")[2]),
            )
        )
    return migrate_env, started


def _secret_value(ref: dict[str, Any]) -> str:
    secret = k8s_object("Secret", ref["name"])
    value: str = secret["stringData"][ref["key"]]
    return value


def _container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    spec = doc["spec"]["template"]["spec"]
    found = [c for c in [*spec.get("initContainers", []), *spec["containers"]] if c["name"] == name]
    assert len(found) == 1, name
    container: dict[str, Any] = found[0]
    return container


def _k8s_env(doc: dict[str, Any], container: dict[str, Any], loc: Localizer) -> dict[str, str]:
    """The container's env with secretKeyRefs resolved and Secret volume mounts written
    as files under the work directory (paths in the env rewritten to match)."""
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"].get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        directory = loc.workdir / mount["name"]
        directory.mkdir(exist_ok=True)
        for key, value in k8s_object("Secret", secret["secretName"])["stringData"].items():
            (directory / key).write_text(value)
        mounts[mount["mountPath"].rstrip("/") + "/"] = directory
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            value = _secret_value(item["valueFrom"]["secretKeyRef"])
        else:
            value = str(item["value"])
        for mount_path, directory in mounts.items():
            if value.startswith(mount_path):
                value = str(directory / value[len(mount_path) :])
        env[item["name"]] = value
    return loc.env(env)


def _k8s_services(loc: Localizer) -> tuple[dict[str, str], list[Service]]:
    job = k8s_object("Job", "policy-sidecar-migrate")
    migrate = _container(job, "migrate")
    assert migrate["args"] == ["migrate"]
    migrate_env = _k8s_env(job, migrate, loc)
    started = []
    for doc_name, container_name in (
        ("policy-sidecar-admin", "admin"),
        ("policy-sidecar", "sidecar"),
    ):
        doc = k8s_object("Deployment", doc_name)
        container = _container(doc, container_name)
        probe = container["readinessProbe"]
        if "httpGet" in probe:
            named = {p["name"]: p["containerPort"] for p in container["ports"]}
            port, path = named[probe["httpGet"]["port"]], probe["httpGet"]["path"]
        else:
            port, path = probe["grpc"]["port"], None
        started.append(
            Service(
                f"k8s-{container_name}",
                loc.argv(container["args"]),
                _k8s_env(doc, container, loc),
                int(port),
                path,
            )
        )
    return migrate_env, started


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database owned by the deployment's database user (created if missing:
    the local server trusts loopback connections, so only the role must exist)."""
    name = f"deploy_{uuid.uuid4().hex[:12]}"
    owner = urlsplit(compose_services()["migrate"]["environment"]["POLICY_SIDECAR_DATABASE_URL"])
    user = owner.username
    assert user is not None
    assert (
        urlsplit(_secret_value({"name": "policy-sidecar-backends", "key": "database-url"})).username
        == user
    )
    with psycopg.connect(LOCAL_DSN, autocommit=True) as conn:
        # An earlier (or a parallel) run may have created it.
        with contextlib.suppress(errors.DuplicateObject, errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(user)
            )
        )
    try:
        yield name
    finally:
        with psycopg.connect(LOCAL_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _process_env(env: Mapping[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("POLICY_SIDECAR_")}
    return {**inherited, **env}


def _wait_ready(service: Service, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    probe = [sys.executable, str(contract.PROBE_FILE), "grpc", f"127.0.0.1:{port}"]
    if service.health_path is not None:
        url = f"http://127.0.0.1:{port}{service.health_path}"
        probe = [sys.executable, str(contract.PROBE_FILE), "get", url]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"{service.name} exited ({proc.returncode}):\n{log.read_text(errors='replace')}"
            )
        if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"{service.name} not ready:\n{log.read_text(errors='replace')}")


@pytest.mark.parametrize("source", ["compose", "k8s"])
def test_admin_and_sidecar_reach_readiness_with_the_shipped_configuration(
    source: str, database: str, tmp_path: Path
) -> None:
    loc = Localizer(database=database, workdir=tmp_path)
    # The admin tokens of both files: the session's log check looks for them too.
    register_secret(
        compose_services()["admin"]["environment"]["POLICY_SIDECAR_ADMIN_TOKENS"].split(":")[-1],
        *(
            line.split(":")[-1]
            for line in _secret_value({"name": "policy-sidecar-admin-tokens", "key": "tokens"})
            .strip()
            .splitlines()
        ),
    )
    migrate_env, services = (_compose_services if source == "compose" else _k8s_services)(loc)

    migrated = subprocess.run(
        [*CLI, "migrate"], env=_process_env(migrate_env), capture_output=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr.decode(errors="replace")

    running: list[subprocess.Popen[bytes]] = []
    try:
        for service in services:
            env = dict(service.env)
            if service.name.endswith("admin"):
                # The admin's ports are its defaults (not written in the files); its
                # readiness is gRPC health, or the console's /healthz (which checks it).
                assert service.health_port in (contract.ADMIN_GRPC_PORT, contract.ADMIN_UI_PORT)
                env.setdefault("POLICY_SIDECAR_ADMIN_PORT", str(loc.port(contract.ADMIN_GRPC_PORT)))
                env.setdefault(
                    "POLICY_SIDECAR_ADMIN_METRICS_PORT", str(loc.port(contract.ADMIN_METRICS_PORT))
                )
            log = tmp_path / f"{service.name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*CLI, *service.argv],
                    env=_process_env(env),
                    cwd=tmp_path,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            running.append(proc)
            _wait_ready(service, proc, loc.port(service.health_port), log)
            if service.name.endswith("admin"):
                # The console the file configures answers too (and reports the admin).
                console = Service(service.name + "-console", [], {}, 0, "/healthz")
                port = int(env["POLICY_SIDECAR_UI_PORT"])
                _wait_ready(console, proc, port, log)
    finally:
        for proc in running:
            proc.terminate()
        for proc in running:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
