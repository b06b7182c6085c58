"""`policy-sidecar migrate` as an operator runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.postgres


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "policy_sidecar.cli.main", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_applies_then_reports_up_to_date(schema_dsn: str) -> None:
    first = run("--database-url", schema_dsn)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied: 0001_core.sql")
    second = run("--database-url", schema_dsn)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "nothing to apply: up to date"


def test_unreachable_database_is_a_clear_failure() -> None:
    result = run("--database-url", "postgresql://postgres@127.0.0.1:1/nope?connect_timeout=2")
    assert result.returncode == 1
    assert "migrate failed" in result.stderr
    assert "Connection refused" in result.stderr
