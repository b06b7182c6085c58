"""The committed generated code matches the protos (buf generate), buf lint is clean,
and the breaking-change script runs (skipping while main has no admin protos)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_generated_code_is_fresh_and_lint_clean() -> None:
    result = run("scripts/gen-protos", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generated code up to date" in result.stdout


@pytest.mark.parametrize("branch", ["main", "no-such-branch"])
def test_breaking_check_runs(branch: str) -> None:
    result = run("scripts/buf-breaking", branch)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "buf breaking:" in result.stdout
