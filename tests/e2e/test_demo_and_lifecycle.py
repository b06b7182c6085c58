"""The sidecar's graceful shutdown and lifecycle (the demo: test_demo_fresh_venv.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from policy_sidecar.cli.launcher import start_stack
from tests.e2e.conftest import KEY, at_once, usage_records, write_config

pytestmark = pytest.mark.e2e


def test_sigterm_drains_and_flushes_usage(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, write_config(tmp_path), workers=2)
    try:
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0)
        at_once(  # in bursts, so both workers have lines to read
            lambda i: client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"n{i}"}],
                extra_headers={"x-request-id": f"term-{i}"},
            ),
            20,
        )
        sidecar = stack.processes.pop("sidecar")
        assert sidecar.stop(signal.SIGTERM) == 0, sidecar.log_tail()
        # What the workers had not read from Envoy's access log yet is read after the
        # restart, from their saved cursors: every request once.
        stack.start_sidecar(write_config(tmp_path))
        records = usage_records(stack, {f"term-{i}" for i in range(20)}, count=20, timeout=30)
        assert sorted(r["request_id"] for r in records) == sorted(f"term-{i}" for i in range(20))
        assert all(r["decision"] == "allow" for r in records)
    finally:
        stack.stop()


def test_bad_config_stops_start_up_with_a_precise_message(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "version: 1\npolicies:\n  - id: p\n    name: n\n    type: nope\n    config: {}\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "policy_sidecar.cli.main",
            "serve",
            "--config",
            str(config),
            "--ports",
            "50999",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{config}:5: policies[0].type: Input should be" in result.stderr


def test_usage_file_lines_are_whole_json(tmp_path: Path) -> None:
    # Two workers append to one file; every line must still be one JSON object.
    stack = start_stack(tmp_path, write_config(tmp_path), workers=2)
    try:
        client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY, max_retries=0)
        at_once(  # at once, so both workers append
            lambda i: client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"x-request-id": f"lines-{i}"},
            ),
            30,
        )
        usage_records(stack, {f"lines-{i}" for i in range(30)}, count=30)
    finally:
        stack.stop()
    for line in stack.usage_file.read_text().splitlines():
        json.loads(line)
