"""docs/connect-providers.md, followed literally: create the account, write the key
file, send the request. Only what cannot be real offline is changed: the account
connects to a TLS fake provider on 127.0.0.1 that the test CA certified as
api.openai.com, and the ports are free ones."""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from policy_sidecar.cli.launcher import free_port, new_stack
from policy_sidecar.envoy.accounts_file import load_accounts_file
from policy_sidecar.fakeprovider.app import RECEIVED_PATH
from tests.e2e.conftest import KEY

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).parents[2] / "docs" / "connect-providers.md"
PROVIDER_KEY = "sk-docs-provider-key-0123456789"
RECEIVED_HEADERS = "x-fake-received-headers"


def block(name: str) -> str:
    """The fenced block right after ``<!-- docs-test: name -->``."""
    match = re.search(
        rf"<!-- docs-test: {name} -->\n```\w*\n(.*?)\n```", DOCS.read_text(), re.DOTALL
    )
    assert match, f"docs block {name!r} is gone from {DOCS}"
    return match.group(1)


def shell(command: str, env: dict[str, str]) -> str:
    # `policy-sidecar` is this venv's console script.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    result = subprocess.run(
        ["bash", "-euc", command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env, "PATH": path},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_connect_page_works_as_written(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    docs_dir = "/etc/envoy-credentials"

    # 1. Create the account (and a model routed to it), as the page shows.
    accounts = yaml.safe_load(block("accounts"))
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("api.openai.com").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "cert.pem")
    )
    port = free_port()
    for account in accounts["provider_accounts"]:
        account.update(address="127.0.0.1", port=port, ca_file=str(tmp_path / "ca.pem"))
    accounts_file = tmp_path / "accounts.yaml"
    accounts_file.write_text(yaml.safe_dump(accounts))
    render = block("render").replace(docs_dir, str(credentials))
    rendered = shell(f"cd {tmp_path} && {render} && cat envoy.yaml", {})
    assert "name: openai-prod" in rendered  # the documented command renders the cluster

    config = {
        "version": 1,
        "applications": [
            {"id": "docs-app", "org_id": "docs-org", "keys": [{"environment": "dev", "key": KEY}]}
        ],
        **yaml.safe_load(block("models")),
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    # 2. Write the key file.
    shell(block("key").replace(docs_dir, str(credentials)), {"OPENAI_API_KEY": PROVIDER_KEY})

    stack = new_stack(tmp_path)
    stack.credentials_dir = credentials
    stack.accounts.extend(load_accounts_file(accounts_file))
    try:
        stack.start_fake_provider(
            "openai-fake", port, args=["--tls-cert", str(tmp_path / "cert.pem")], route=False
        )
        stack.start_fake_provider()
        stack.start_sidecar(tmp_path / "config.yaml")
        stack.start_envoy()

        # 3. Send a request, with -i to see what reached the provider.
        request = block("request").replace("127.0.0.1:10000", f"127.0.0.1:{stack.listen_port}")
        output = shell(request.replace("curl -s ", "curl -s -i ", 1), {"GATEWAY_KEY": KEY})
        seen = received(port)
    finally:
        stack.stop()
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200"), output
    assert json.loads(body)["choices"][0]["message"]["content"]
    headers = dict(line.lower().split(": ", 1) for line in head.splitlines()[1:] if ": " in line)
    assert "authorization" in headers[RECEIVED_HEADERS].split(",")
    (request_seen,) = seen
    assert request_seen["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert request_seen["headers"]["host"] == "api.openai.com"


def received(port: int) -> list[dict[str, Any]]:
    """What reached the fake provider, asked directly."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", RECEIVED_PATH)
        found: list[dict[str, Any]] = json.loads(conn.getresponse().read())
        return found
    finally:
        conn.close()
