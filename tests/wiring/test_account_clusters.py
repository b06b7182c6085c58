"""The run-time CDS file: the accounts' clusters and the fallback groups' clusters, as
the sidecar writes them from Postgres; Envoy accepts what it writes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.cli.launcher import envoy_binary
from policy_sidecar.envoy.upstreams import secret_file_text
from policy_sidecar.wiring.account_clusters import AccountClusterWriter

PROD = ProviderAccount(
    name="openai-prod", provider="openai", base_host="api.openai.com", credential_ref="prod"
)
SPARE = dataclasses.replace(PROD, name="openai-spare", credential_ref="spare")
CLAUDE = ProviderAccount(
    name="claude", provider="anthropic", base_host="api.anthropic.com", credential_ref="claude"
)
GOOD = FallbackGroup("openai-any", ("openai-prod", "openai-spare"))
MIXED = FallbackGroup("mixed", ("openai-prod", "claude"))


def clusters(path: Path) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(path.read_text())["resources"]}


async def test_groups_are_written_beside_the_accounts(tmp_path: Path) -> None:
    path = tmp_path / "clusters.json"
    writer = AccountClusterWriter(str(path), str(tmp_path / "creds"))
    await writer.write([SPARE, PROD], [GOOD])
    written = clusters(path)
    assert list(written) == ["openai-prod", "openai-spare", "openai-any"]
    aggregate = written["openai-any"]["cluster_type"]["typed_config"]["clusters"]
    assert aggregate == ["openai-prod", "openai-spare"]  # the group's order, not sorted
    for name in ("openai-prod", "openai-spare"):
        (endpoint,) = written[name]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        # The access log's "acct" and a group's key choice both read this.
        assert endpoint["metadata"] == {"filter_metadata": {"policy_sidecar": {"account": name}}}
    # A group removed at run time goes from the file.
    await writer.write([SPARE, PROD], [])
    assert list(clusters(path)) == ["openai-prod", "openai-spare"]


async def test_a_group_its_accounts_no_longer_satisfy_is_left_out_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "clusters.json"
    writer = AccountClusterWriter(str(path), str(tmp_path / "creds"))
    off = dataclasses.replace(SPARE, enabled=False)
    with caplog.at_level(logging.ERROR):
        await writer.write([PROD, off, CLAUDE], [GOOD, MIXED])
    assert list(clusters(path)) == ["claude", "openai-prod"]
    assert "'openai-any': no enabled account 'openai-spare'" in caplog.text
    assert "'mixed': its accounts are of one provider" in caplog.text


@pytest.mark.e2e
def test_envoy_accepts_the_written_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for ref in ("prod", "spare", "claude"):
        (creds / f"{ref}.yaml").write_text(secret_file_text(ref, "k"))
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    accounts = [dataclasses.replace(a, ca_file=str(ca)) for a in (PROD, SPARE, CLAUDE)]
    path = tmp_path / "clusters.json"
    asyncio.run(AccountClusterWriter(str(path), str(creds)).write(accounts, [GOOD]))
    resources = json.loads(path.read_text())["resources"]
    assert len(resources) == 4
    for cluster in resources:
        del cluster["@type"]
    bootstrap = {"node": {"id": "t", "cluster": "t"}, "static_resources": {"clusters": resources}}
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
