"""The committed generated code matches the protos (buf generate), buf lint is clean,
and the breaking-change script compares protos/ with the committed baseline image, and
fails (never skips) when it cannot compare or finds a breaking change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, **extra_env}
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_generated_code_is_fresh_and_lint_clean() -> None:
    result = run("scripts/gen-protos", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generated code up to date" in result.stdout


def test_protos_are_not_broken_against_the_committed_baseline() -> None:
    result = run("scripts/buf-breaking")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no breaking changes against protos/baseline.binpb" in result.stdout


def test_without_a_baseline_the_check_fails_instead_of_skipping(tmp_path: Path) -> None:
    result = run("scripts/buf-breaking", BUF_BASELINE=str(tmp_path / "missing.binpb"))
    assert result.returncode != 0
    assert "FAILED, no baseline image" in result.stderr
    assert "no breaking changes" not in result.stdout


def test_a_removed_file_is_reported_as_breaking(tmp_path: Path) -> None:
    # A baseline whose API had one more file: today's protos deleted it.
    shutil.copytree(ROOT / "protos", tmp_path / "protos")
    extra = tmp_path / "protos" / "policy_sidecar" / "admin" / "v1" / "retired.proto"
    extra.write_text(
        'syntax = "proto3";\n\npackage policy_sidecar.admin.v1;\n\nmessage Retired {}\n'
    )
    baseline = tmp_path / "baseline.binpb"
    buf = Path(sys.executable).parent / "buf"
    built = subprocess.run(
        [str(buf), "build", str(tmp_path / "protos"), "-o", str(baseline)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    result = run("scripts/buf-breaking", BUF_BASELINE=str(baseline))
    assert result.returncode != 0
    assert "retired.proto" in result.stdout + result.stderr
