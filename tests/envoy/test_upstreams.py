"""Provider account clusters: TLS that verifies, the key injected from a watched file."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from policy_sidecar.catalog.accounts import FallbackGroup, ProviderAccount
from policy_sidecar.cli.launcher import envoy_binary
from policy_sidecar.envoy.upstreams import (
    ATTEMPT_ACCOUNT_HEADER,
    CLUSTER_TYPE,
    SECRET_TYPE,
    account_cluster,
    render_account_clusters,
    render_fallback_clusters,
    secret_file_text,
    strip_internal_headers,
)

OPENAI = ProviderAccount(
    name="openai-prod", provider="openai", base_host="api.openai.com", credential_ref="openai-prod"
)
AZURE = ProviderAccount(
    name="azure-eu",
    provider="azure",
    base_host="contoso.openai.azure.com",
    credential_ref="azure-eu-key",
    ca_file="/tmp/test-ca.pem",
    address="127.0.0.1",
    port=8443,
)


def injector(cluster: dict[str, Any]) -> dict[str, Any]:
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    first, strip, codec = options["http_filters"]
    assert strip == strip_internal_headers()
    assert codec["name"] == "envoy.filters.http.upstream_codec"  # the codec comes last
    config: dict[str, Any] = first["typed_config"]
    return config


def test_a_cluster_verifies_the_provider_and_resolves_its_host() -> None:
    (cluster,) = render_account_clusters([OPENAI], credentials_dir="/etc/envoy/credentials")
    assert cluster["@type"] == CLUSTER_TYPE and cluster["name"] == "openai-prod"
    assert cluster["type"] == "STRICT_DNS"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {
        "address": "api.openai.com",
        "port_value": 443,
    }
    assert endpoint["hostname"] == "api.openai.com"
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["auto_host_sni"] is True and tls["auto_sni_san_validation"] is True
    assert tls["sni"] == "api.openai.com"
    ca = tls["common_tls_context"]["validation_context"]["trusted_ca"]
    assert ca == {"filename": "/etc/ssl/certs/ca-certificates.crt"}
    assert cluster["outlier_detection"]["consecutive_5xx"] > 0


def test_a_test_account_connects_to_its_address_but_keeps_the_name() -> None:
    (cluster,) = render_account_clusters(
        [AZURE], credentials_dir="/creds/", system_ca="/other/ca.pem"
    )
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8443}
    assert endpoint["hostname"] == "contoso.openai.azure.com"
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "contoso.openai.azure.com"
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"] == {
        "filename": "/tmp/test-ca.pem"
    }


@pytest.mark.parametrize(
    ("provider", "header", "prefix"),
    [
        ("openai", "authorization", "Bearer "),
        ("cohere", "authorization", "Bearer "),
        ("azure", "api-key", None),
        ("anthropic", "x-api-key", None),
        ("gemini", "x-goog-api-key", None),
    ],
)
def test_the_provider_key_overwrites_the_callers(provider: str, header: str, prefix: str) -> None:
    account = dataclasses.replace(OPENAI, provider=provider)  # type: ignore[arg-type]
    (cluster,) = render_account_clusters([account], credentials_dir="/creds")
    config = injector(cluster)
    assert config["overwrite"] is True
    generic = config["credential"]["typed_config"]
    assert generic["header"] == header
    assert generic.get("header_value_prefix") == prefix
    sds = generic["credential"]
    assert sds["name"] == "openai-prod"
    assert sds["sds_config"]["path_config_source"] == {
        "path": "/creds/openai-prod.yaml",
        "watched_directory": {"path": "/creds"},
    }


def test_disabled_accounts_have_no_cluster_and_names_are_unique() -> None:
    off = dataclasses.replace(AZURE, enabled=False)
    assert [c["name"] for c in render_account_clusters([OPENAI, off], credentials_dir="/c")] == [
        "openai-prod"
    ]
    with pytest.raises(ValueError, match="openai-prod"):
        render_account_clusters([OPENAI, OPENAI], credentials_dir="/c")


def test_the_secret_file_names_the_credential() -> None:
    text = secret_file_text("openai-prod", "sk-123")
    (resource,) = yaml.safe_load(text)["resources"]
    assert resource == {
        "@type": SECRET_TYPE,
        "name": "openai-prod",
        "generic_secret": {"secret": {"inline_string": "sk-123"}},
    }
    for bad in ("", " sk", "sk\n1"):
        with pytest.raises(ValueError, match="openai-prod"):
            secret_file_text("openai-prod", bad)


@pytest.mark.e2e
def test_envoy_accepts_the_clusters(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for ref in ("openai-prod", "azure-eu-key", "openai-spare"):
        (creds / f"{ref}.yaml").write_text(secret_file_text(ref, "k"))
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    accounts = [OPENAI, dataclasses.replace(AZURE, ca_file=str(ca)), SPARE]
    clusters = render_account_clusters(accounts, credentials_dir=str(creds))
    clusters += render_fallback_clusters([GROUP], accounts, credentials_dir=str(creds))
    for cluster in clusters:
        del cluster["@type"]
    bootstrap = {
        "node": {"id": "test", "cluster": "test"},
        "static_resources": {"clusters": clusters},
    }
    path = tmp_path / "envoy.yaml"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


SPARE = dataclasses.replace(OPENAI, name="openai-spare", credential_ref="openai-spare")
GROUP = FallbackGroup("openai-any", ("openai-prod", "openai-spare"))


def test_a_fallback_group_tries_its_accounts_in_order_each_with_its_key() -> None:
    (cluster,) = render_fallback_clusters([GROUP], [OPENAI, SPARE], credentials_dir="/c")
    assert cluster["name"] == "openai-any"
    assert cluster["cluster_type"]["typed_config"]["clusters"] == ["openai-prod", "openai-spare"]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    names = [f["name"] for f in options["http_filters"]]
    assert names == [
        "envoy.filters.http.header_mutation",
        "credential-openai-prod",
        "credential-openai-spare",
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.header_mutation",
        "envoy.filters.http.upstream_codec",
    ]
    assert options["http_filters"][4] == strip_internal_headers()
    # Each account's own injector, run only for the attempt that goes to it.
    spare = options["http_filters"][2]["typed_config"]
    assert spare["extension_config"]["typed_config"] == injector(account_cluster(SPARE, "/c"))
    (matcher,) = spare["xds_matcher"]["matcher_list"]["matchers"]
    assert matcher["predicate"]["not_matcher"]["single_predicate"]["value_match"] == {
        "exact": "openai-spare"
    }
    # The header naming the attempt's account comes from the chosen host, then goes.
    first, last = options["http_filters"][0], options["http_filters"][3]
    (set_it,) = first["typed_config"]["mutations"]["request_mutations"]
    assert set_it["append"]["header"] == {
        "key": ATTEMPT_ACCOUNT_HEADER,
        "value": "%UPSTREAM_METADATA(policy_sidecar:account)%",
    }
    assert last["typed_config"]["mutations"]["request_mutations"] == [
        {"remove": ATTEMPT_ACCOUNT_HEADER}
    ]
    (endpoint,) = account_cluster(SPARE, "/c")["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["metadata"] == {
        "filter_metadata": {"policy_sidecar": {"account": "openai-spare"}}
    }


@pytest.mark.parametrize(
    ("group", "error"),
    [
        (FallbackGroup("openai-any", ("openai-prod",)), "two or more distinct"),
        (FallbackGroup("openai-any", ("openai-prod", "openai-prod")), "two or more distinct"),
        (FallbackGroup("openai-any", ("openai-prod", "ghost")), "no enabled account 'ghost'"),
        (FallbackGroup("openai-prod", ("openai-prod", "openai-spare")), "no account has"),
        (FallbackGroup("mixed", ("openai-prod", "azure-eu")), "one provider"),
        (FallbackGroup("off", ("openai-prod", "disabled")), "no enabled account 'disabled'"),
    ],
)
def test_a_bad_fallback_group_is_refused(group: FallbackGroup, error: str) -> None:
    disabled = dataclasses.replace(SPARE, name="disabled", enabled=False)
    with pytest.raises(ValueError, match=error):
        render_fallback_clusters([group], [OPENAI, SPARE, AZURE, disabled], credentials_dir="/c")
