"""Fixtures for the recorder's Postgres tests: a schema per test on the shared server
(from tests/store) and a private, stoppable Postgres instance."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from policy_sidecar.cli.ports import free_port
from tests.store.conftest import dsn, pool, schema_dsn

__all__ = ["dsn", "pool", "private_postgres", "schema_dsn"]


def find_pg_bin() -> Path | None:
    """The directory of initdb/pg_ctl, found rather than assumed (apt installs whichever
    major version it has): POLICY_SIDECAR_TEST_PG_BIN, then `pg_config --bindir`, then
    the newest /usr/lib/postgresql/<version>/bin."""
    if configured := os.environ.get("POLICY_SIDECAR_TEST_PG_BIN"):
        return Path(configured)
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            ).stdout.strip()
            candidates.append(Path(out))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    candidates.extend(versions)
    return next((c for c in candidates if (c / "initdb").exists()), None)


PG_BIN = find_pg_bin()


def _pg_bin() -> Path:
    assert PG_BIN is not None
    return PG_BIN


def _as_postgres_user() -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PrivatePostgres:
    """A throwaway Postgres server this test session may stop and start at will."""

    datadir: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres_user(), str(_pg_bin() / "pg_ctl"), "-D", str(self.datadir), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir.parent}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._ctl("-w", "-t", "30", "-o", opts, "-l", str(self.datadir.parent / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-t", "30", "-m", mode, "stop")


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.fail(
            f"no Postgres binaries (initdb) found (tried {PG_BIN or 'pg_config --bindir and'}"
            " /usr/lib/postgresql/*/bin; set POLICY_SIDECAR_TEST_PG_BIN)"
        )
    root = Path(tempfile.mkdtemp(prefix="ps-private-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    server = PrivatePostgres(root / "data", free_port())
    subprocess.run(
        [*_as_postgres_user(), str(_pg_bin() / "initdb"), "-D", str(server.datadir), "-A", "trust",
         "-U", "postgres", "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # a test left it stopped
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
