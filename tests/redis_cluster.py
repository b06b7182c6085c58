"""A real three-master Redis Cluster on loopback, for tests and the bench.

Three ``redis-server --cluster-enabled yes`` processes on free ports (each with its
cluster-bus port from ``free_port`` too, ``--cluster-port``, Redis 7+, rather than the
default ``port + 10000``, which lands in the ephemeral range), joined by
``redis-cli --cluster create``;
``start()`` returns once every node reports ``cluster_state:ok`` and agrees on the slot
map. Nothing is persisted; ``stop()`` terminates the processes and removes the node
files. The Debian ``redis-server`` package ships both binaries (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from policy_sidecar.cli.ports import free_port

__all__ = ["LocalRedis", "LocalRedisCluster"]

_DEADLINE_S = 60.0


class _NodeExited(RuntimeError):
    pass


class LocalRedisCluster:
    """Three masters on 127.0.0.1; no replicas unless asked (then ``replicas`` per
    master, and a short ``node_timeout_ms`` makes a failover take about a second)."""

    def __init__(
        self, masters: int = 3, *, replicas: int = 0, node_timeout_ms: int | None = None
    ) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        """The sidecar's cluster URL: every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def node_urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{p}/0" for p in self.ports]

    def start(self) -> None:
        """Start the nodes and form the cluster; a node that exits at once (another
        process took its port meanwhile) makes a fresh attempt on new ports."""
        for binary in ("redis-server", "redis-cli"):
            if shutil.which(binary) is None:
                raise RuntimeError(f"{binary} is needed (.ci/run installs redis-server)")
        for attempt in range(3):
            try:
                self._start()
                return
            except _NodeExited:
                if attempt == 2:
                    raise

    def _start(self) -> None:
        self.ports = []
        self._dir = Path(tempfile.mkdtemp(prefix="ps-redis-cluster-"))
        try:
            for i in range(self.masters * (1 + self.replicas)):
                port = free_port()
                self.ports.append(port)
                self._procs.append(self._server(port, self._dir / f"node-{i}"))
            for port, proc in zip(self.ports, self._procs, strict=True):
                self._wait(lambda p=port: self._cli(p, "ping") == "PONG", f"node {port} up", proc)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            create = ["--cluster", "create", *nodes, "--cluster-replicas", str(self.replicas)]
            create.append("--cluster-yes")
            subprocess.run(
                ["redis-cli", *create],
                check=True,
                capture_output=True,
                timeout=_DEADLINE_S,
            )
            for port in self.ports:
                self._wait(lambda p=port: self._ready(p), f"node {port} cluster_state:ok")
                # A replica that has not finished its first sync cannot take over.
                self._wait(lambda p=port: self._synced(p), f"node {port} replica in sync")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._procs.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def master_of(self, key: str) -> int:
        """The port of the master serving ``key``'s slot now."""
        port = next(
            p for p, proc in zip(self.ports, self._procs, strict=True) if proc.poll() is None
        )
        slot = int(self._cli(port, "cluster", "keyslot", key))
        for line in self._cli(port, "cluster", "nodes").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for ranges in fields[8:]:
                low, _, high = ranges.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no master serves slot {slot}")

    def kill_node(self, port: int) -> None:
        """Stop one node for good (SIGKILL: no goodbye to its clients)."""
        proc = self._procs[self.ports.index(port)]
        proc.kill()
        proc.wait(10)

    def _server(self, port: int, workdir: Path) -> subprocess.Popen[bytes]:
        workdir.mkdir(parents=True)
        args = ["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
        args += ["--cluster-port", str(free_port())]
        args += ["--cluster-config-file", str(workdir / "nodes.conf"), "--dir", str(workdir)]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.node_timeout_ms is not None:
            args += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        log = (workdir / "redis.log").open("wb")
        try:
            return subprocess.Popen(["redis-server", *args], stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()

    def _cli(self, port: int, *command: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *command],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout.strip()

    def _ready(self, port: int) -> bool:
        info = self._cli(port, "cluster", "info")
        # Every node must know every master and see all 16384 slots served.
        return (
            "cluster_state:ok" in info
            and "cluster_slots_ok:16384" in info
            and f"cluster_known_nodes:{self.masters * (1 + self.replicas)}" in info
        )

    def _synced(self, port: int) -> bool:
        info = self._cli(port, "info", "replication")
        return "role:slave" not in info or "master_link_status:up" in info

    def _wait(
        self, check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes] | None = None
    ) -> None:
        deadline = time.monotonic() + _DEADLINE_S
        while not check():
            if proc is not None and proc.poll() is not None:
                raise _NodeExited(f"redis-server exited ({proc.returncode}): {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster not ready within {_DEADLINE_S}s: {what}")
            time.sleep(0.1)


class LocalRedis(LocalRedisCluster):
    """One plain redis-server (no cluster mode) on a free loopback port, started and
    stopped the same way: the bench compares it with the cluster on equal terms (the
    shared server on 6379 also serves every other test run on the machine)."""

    def __init__(self) -> None:
        super().__init__(masters=1)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ps-redis-"))
        try:
            port = free_port()
            self.ports.append(port)
            workdir = self._dir / "node"
            workdir.mkdir()
            args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
            args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
            self._procs.append(subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL))
            self._wait(lambda: self._cli(port, "ping") == "PONG", f"redis {port} up")
        except BaseException:
            self.stop()
            raise
