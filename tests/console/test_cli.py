"""`policy-sidecar admin --ui-port` runs the console beside the admin service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.admin.helpers import ADMIN_TOKEN, READ_TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DEADLINE = 60.0


def test_admin_command_serves_the_console(dsn: str, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POLICY_SIDECAR_")},
        "POLICY_SIDECAR_DATABASE_URL": dsn,
        "POLICY_SIDECAR_ADMIN_TOKENS": f"ops:admin:{ADMIN_TOKEN},viewer:readonly:{READ_TOKEN}",
        "POLICY_SIDECAR_ADMIN_PORT": "0",
        "POLICY_SIDECAR_ADMIN_METRICS_PORT": "-1",
    }
    log = tmp_path / "admin.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "policy_sidecar.cli.main", "admin", "--ui-port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        url = None
        while url is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            found = re.search(r"console listening on (http://\S+/)", log.read_text())
            url = found.group(1) if found else None
            time.sleep(0.1)
        with urllib.request.urlopen(url + "healthz", timeout=10) as r:
            assert r.read() == b"ok\n"
        with urllib.request.urlopen(url + "login", timeout=10) as r:
            assert b'action="/login"' in r.read()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()
