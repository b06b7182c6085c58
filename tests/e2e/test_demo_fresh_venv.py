"""The demo as a newcomer runs it: a fresh virtual environment, the README's install
line, ``policy-sidecar demo`` (embedded Postgres and Redis, the admin service, the
production sidecar, Envoy), the printed commands, a live policy change, and Ctrl-C
leaving no process behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.log_secrets import register as register_secret

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
START_TIMEOUT = 180.0
PROPAGATION = 30.0


def readme_install_line() -> str:
    """The pip part of the README's first command (`... && .venv/bin/pip install ...`)."""
    found = re.search(
        r"^python3 -m venv \.venv && (\.venv/bin/pip install [^&]+?) &&", README.read_text(), re.M
    )
    assert found, "README: the first command no longer installs with .venv/bin/pip"
    return found.group(1)


def process_tree(root: int) -> set[tuple[int, str]]:
    """(pid, start time) of `root`'s descendants, from /proc (start time: pids get reused)."""
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        started[int(entry.name)] = fields[19]
    found: set[tuple[int, str]] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and (pid, started[pid]) not in found:
                found.add((pid, started[pid]))
                frontier.append(pid)
    return found


def alive(processes: set[tuple[int, str]]) -> list[str]:
    left = []
    for pid, start in processes:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[19] == start and " Z " not in stat:
            left.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
    return left


@pytest.fixture(scope="module")
def venv() -> Iterator[Path]:
    # Not under pytest's temp root: every pytest session resets that to mode 0700, and
    # the demo's Postgres (run as its own user when we are root) must reach its binaries.
    home = Path(tempfile.mkdtemp(prefix="policy-sidecar-newcomer-"))
    try:
        yield _install(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _install(home: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(home / ".venv")], check=True, timeout=120)
    # The README's line, run from the checkout (pip's own configuration and cache apply).
    install = shlex.split(readme_install_line())
    install[0] = str(home / install[0])
    install = [ROOT.as_posix() + arg[1:] if arg.startswith(".[") else arg for arg in install]
    result = subprocess.run(
        [*install, "-q"], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return home / ".venv"


def shell(command: str) -> str:
    """stdout, or stdout and stderr when the command fails (for the assertion message)."""
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout if done.returncode == 0 else done.stdout + done.stderr


def status_of(curl: str) -> str:
    return shell(curl.replace("curl -s", "curl -s -o /dev/null -w '%{http_code}'", 1)).strip()


@pytest.fixture
def demo(venv: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICY_SIDECAR_")}
    proc = subprocess.Popen(
        [str(venv / "bin" / "policy-sidecar"), "demo", "--port", "0", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=venv.parent,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Press Ctrl-C" in output, output
        yield proc, output
    finally:
        if proc.poll() is None:  # the test failed before its Ctrl-C: stop it the same way
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        proc.stdout.close()
        # The demo's logs go where the session's log check (tests/log_secrets.py) looks.
        logs = re.search(r"logs in (\S+)\)", "".join(lines))
        if logs:
            workdir = Path(logs.group(1))
            for log in workdir.glob("*.log"):
                shutil.copy(log, tmp_path / log.name)
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.timeout(1200)
def test_fresh_venv_demo_runs_the_product(demo: tuple[subprocess.Popen[str], str]) -> None:
    proc, output = demo
    tree = process_tree(proc.pid)
    token = re.search(r"^Admin token: (\S+)$", output, flags=re.M)
    assert token, output
    register_secret(token.group(1), *re.findall(r"Bearer (ps_\S+?)'", output))
    curls = re.findall(r"^\s+(curl .*)$", output, flags=re.M)
    assert len(curls) == 2, output
    allowed, denied = curls
    assert [status_of(allowed), status_of(denied)] == ["200", "403"], output
    assert "Postgres: embedded" in output and "Redis: embedded" in output, output
    # The printed console URL answers with its login page.
    console = re.search(r"^Console: (\S+)", output, flags=re.M)
    assert console, output
    assert shell(f"curl -s {console.group(1)}login").count("<form") >= 1, output

    # The admin API answers the printed grpcurl line with the seeded policies.
    (grpcurl,) = re.findall(r"^\s+(\S*grpcurl .*)$", output, flags=re.M)
    listed = json.loads(shell(grpcurl))
    types = {p["type"] for p in listed["policies"]}
    assert types == {"model_allowlist", "request_size", "rate_limit", "token_limit", "custom_cel"}
    assert any(p.get("mode") == "POLICY_MODE_SHADOW" for p in listed["policies"])

    # A policy changed through the admin API applies to the next request.
    allowlist = next(p for p in listed["policies"] if p["type"] == "model_allowlist")
    change = {
        "policy": {
            "id": allowlist["id"],
            "version": allowlist["version"],
            "config": {"models": ["gpt-4o-mini", "gpt-4o", "claude-haiku-*"]},
        },
        "update_mask": {"paths": ["config"]},
    }
    flags, address = grpcurl.rsplit(" ", 2)[:2]

    def call(method: str, body: dict[str, object]) -> str:
        return shell(f"{flags} -d {shlex.quote(json.dumps(body))} {address} {method}")

    updated = call("policy_sidecar.admin.v1.PolicyService/UpdatePolicy", change)
    assert '"gpt-4o"' in updated, updated
    deadline = time.monotonic() + PROPAGATION
    while status_of(denied) != "200":
        assert time.monotonic() < deadline, "the policy change did not apply"
        time.sleep(0.2)

    # The audit log has it, under the demo token's name.
    query = {"object_type": "policy", "object_id": allowlist["id"]}
    audit = json.loads(call("policy_sidecar.admin.v1.AuditService/ListAuditEvents", query))
    assert [(e["actor"], e["action"]) for e in audit["events"]] == [
        ("demo", "update"),
        ("demo", "create"),
    ]

    # Ctrl-C: everything it started stops.
    tree |= process_tree(proc.pid)
    assert len(tree) >= 6, tree  # admin, fake provider, sidecar, Envoy, Postgres, Redis
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    assert alive(tree) == []
