"""The console in `policy-sidecar demo`: the printed URL answers, the printed admin token
logs in, and a policy changed in the console applies to the next request through Envoy.

The demo runs on this machine's Postgres (a fresh, empty database) and Redis; the
embedded ones are tested by tests/e2e/test_demo_fresh_venv.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.log_secrets import register as register_secret

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

BASE_DSN = os.environ.get(
    "POLICY_SIDECAR_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("POLICY_SIDECAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEADLINE = 120.0


@pytest.fixture
def empty_database() -> Iterator[str]:
    name = f"console_demo_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(BASE_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(BASE_DSN, dbname=name)
    finally:
        with psycopg.connect(BASE_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def demo(empty_database: str, tmp_path: Path) -> Iterator[str]:
    """The demo's printed text, once it says it is running."""
    # The terminal output prints the token and keys by design: not a server log.
    log = tmp_path / "demo-output.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICY_SIDECAR_")}
    argv = [sys.executable, "-m", "policy_sidecar.cli.main", "demo", "--port", "0",
            "--workers", "1", "--database-url", empty_database,
            "--redis-url", REDIS_URL]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + DEADLINE
        while "Press Ctrl-C to stop." not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # The demo's server logs, where the session's check looks for leaked secrets.
        found = re.search(r"logs in (\S+)\)", log.read_text())
        if found:
            logs = Path(found.group(1))
            for path in logs.glob("*.log"):
                shutil.copy(path, tmp_path / f"demo-{path.name}")
            shutil.rmtree(logs, ignore_errors=True)


def curl_status(command: str) -> int:
    argv = shlex.split(command)
    result = subprocess.run(
        [argv[0], "-o", "/dev/null", "-w", "%{http_code}", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return int(result.stdout or 0)


async def test_policy_changed_in_the_console_applies_to_the_next_request(demo: str) -> None:
    url = re.search(r"^Console: (http://\S+/)", demo, re.M)
    token = re.search(r"^Admin token: (\S+)", demo, re.M)
    denied = re.search(r"^Denied by .*\n\s+(curl .+)$", demo, re.M)
    assert url and token and denied, demo
    key = re.search(r"Bearer (ps_\S+?)'", denied.group(1))
    assert key
    register_secret(token.group(1), key.group(1))
    base = url.group(1).rstrip("/")
    assert curl_status(denied.group(1)) == 403

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(base + "/login") as r:
            nonce = re.search(r'name="_csrf" value="([^"]+)"', await r.text())
        assert nonce
        headers = {"Origin": base}
        async with s.post(
            base + "/login", data={"token": token.group(1), "_csrf": nonce.group(1)},
            headers=headers,
        ) as r:  # fmt: skip
            page = await r.text()
            assert r.status == 200 and 'data-role="admin"' in page
        async with s.get(base + "/policies?type=model_allowlist") as r:
            page = await r.text()
        link = re.search(r'<a href="(/policies/pol_[^"]+)">support-bot: small models only<', page)
        assert link, page
        async with s.get(base + link.group(1)) as r:
            page = await r.text()
        csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
        form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        assert csrf and "version" in form
        inputs = re.findall(r'name="([a-z_.]+)" value="([^"]*)"', page)
        fields = {name: value for name, value in inputs if not name.startswith("sample.")}
        models = re.search(r'name="model_allowlist.models"[^>]*>([^<]*)</textarea>', page)
        assert models
        data = {
            **fields,
            "_csrf": csrf.group(1),
            "version": form["version"],
            "mode": "enforce",
            "enabled": "on",
            "model_allowlist.models": models.group(1) + "\ngpt-4o",
        }
        async with s.post(base + link.group(1), data=data, headers=headers) as r:
            assert r.status == 200, await r.text()

    deadline = time.monotonic() + 30
    while (status := curl_status(denied.group(1))) != 200:
        assert time.monotonic() < deadline, f"still {status}"
        await asyncio.sleep(0.3)
