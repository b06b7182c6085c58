"""The Envoy configuration the project ships is one the real Envoy accepts."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
import yaml

from policy_sidecar.catalog.accounts import ProviderAccount
from policy_sidecar.cli.launcher import envoy_binary
from policy_sidecar.cli.main import build_parser
from policy_sidecar.envoy.cds import write_cds_file
from policy_sidecar.envoy.guard import REQUEST_ID_KEY, decided_guard
from policy_sidecar.envoy.local_reply import ERROR_HEADER
from policy_sidecar.envoy.render import EnvoyOptions, render_envoy_config
from policy_sidecar.envoy.upstreams import (
    ENVOY_HEADER_PREFIX,
    INTERNAL_HEADER_PREFIX,
    RATE_LIMIT_HEADER_PREFIX,
    secret_file_text,
    strip_internal_headers,
)
from policy_sidecar.extproc import policy_stream
from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.extproc.handover import placement, to_metadata
from policy_sidecar.extproc.responses import METADATA_NAMESPACE

OPTIONS = EnvoyOptions(
    listen_port=10000, admin_port=9901, upstream_port=8081, sidecar_ports=(50051, 50052)
)


def test_rendered_config_structure() -> None:
    config = yaml.safe_load(render_envoy_config(OPTIONS))
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoints = clusters["policy_sidecar"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [
        50051,
        50052,
    ]
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    # One ext_proc filter, request path only; then the guard that lets only decided
    # requests on; the response is watched by Lua.
    policy, decided, capture, router = hcm["http_filters"]
    assert decided == decided_guard()
    assert policy["typed_config"]["failure_mode_allow"] is False  # fail closed
    mode = policy["typed_config"]["processing_mode"]
    assert mode["request_body_mode"] == "BUFFERED"
    assert (mode["response_header_mode"], mode["response_body_mode"]) == ("SKIP", "NONE")
    lua = capture["typed_config"]["default_source_code"]["inline_string"]
    assert "envoy_on_response" in lua and "bodyChunks" in lua
    assert router["name"] == "envoy.filters.http.router"
    # Every cluster without upstream filters of its own drops the provider's internal
    # headers (provider accounts' clusters carry the same filter: test_upstreams.py).
    strip, codec = router["typed_config"]["upstream_http_filters"]
    assert strip == strip_internal_headers()
    assert codec["name"] == "envoy.filters.http.upstream_codec"
    # One access log file per worker, chosen by the worker in the policy metadata; the
    # first worker also takes the lines no worker handled.
    logs = hcm["access_log"]
    assert [log["typed_config"]["path"] for log in logs] == [
        "/var/lib/policy-sidecar/access-log/access-50051.log",
        "/var/lib/policy-sidecar/access-log/access-50052.log",
    ]
    filters = [log["filter"]["metadata_filter"] for log in logs]
    assert [f["matcher"]["value"]["string_match"]["exact"] for f in filters] == ["50051", "50052"]
    assert [f["match_if_key_not_found"] for f in filters] == [True, False]


@pytest.mark.parametrize(
    ("ports", "weights"),
    [
        ((50051,), [16]),
        ((50051, 50052), [16, 1]),
        ((50051, 50052, 50053, 50054), [16, 1, 1, 1]),
    ],
)
def test_the_sidecar_cluster_keeps_low_load_on_the_first_worker(
    ports: tuple[int, ...], weights: list[int]
) -> None:
    # Least request over unequal weights (Envoy's EDF schedule over weight / (active + 1)
    # ** bias): the first worker takes nearly every stream while it has none in flight,
    # the others share what it cannot take. Round robin, or equal weights (random ties),
    # would wake a cold worker for every other request at low load.
    options = dataclasses.replace(OPTIONS, sidecar_ports=ports)
    config = yaml.safe_load(render_envoy_config(options))
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    cluster = clusters["policy_sidecar"]
    assert "lb_policy" not in cluster
    [policy] = cluster["load_balancing_policy"]["policies"]
    extension = policy["typed_extension_config"]
    assert extension["name"] == "envoy.load_balancing_policies.least_request"
    bias = extension["typed_config"]["active_request_bias"]["default_value"]
    # One stream in flight on the first worker still leaves it preferred (a stream is
    # closed a little after its response); from three on the others are preferred.
    assert 2**bias < weights[0] <= 4**bias
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["load_balancing_weight"] for e in endpoints] == weights
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in endpoints] == [*ports]


def test_the_guard_keys_on_what_only_the_decision_carries() -> None:
    principal = decided_guard()["typed_config"]["rules"]["policies"]
    ((_, rule),) = principal.items()
    (matcher,) = rule["principals"]
    assert matcher["metadata"]["filter"] == METADATA_NAMESPACE
    assert matcher["metadata"]["path"] == [{"key": REQUEST_ID_KEY}]
    facts = RequestFacts(request_id="r1", started_at=1.0, ticket="t1")
    # The decision's metadata has the key; the headers phase's placement (worker and
    # ticket only) does not, so a request whose body phase was skipped is refused.
    assert REQUEST_ID_KEY in to_metadata(facts, worker="50051")
    assert REQUEST_ID_KEY not in placement(facts.ticket, "50051")


def test_internal_headers_share_the_prefix_the_upstream_filter_removes() -> None:
    removal = {"remove_on_match": {"key_matcher": {"prefix": INTERNAL_HEADER_PREFIX}}}
    limits = {"remove_on_match": {"key_matcher": {"prefix": RATE_LIMIT_HEADER_PREFIX}}}
    mutations = strip_internal_headers()["typed_config"]["mutations"]
    envoy = {"remove_on_match": {"key_matcher": {"prefix": ENVOY_HEADER_PREFIX}}}
    assert mutations == {
        "request_mutations": [envoy],
        "response_mutations": [removal, limits],
        "response_trailers_mutations": [removal],
    }
    # The error header Envoy's local replies add, and the headers the sidecar removes
    # from a client's request, are all under that prefix.
    assert ERROR_HEADER.startswith(INTERNAL_HEADER_PREFIX)
    assert policy_stream.INTERNAL_HEADER_PREFIX == INTERNAL_HEADER_PREFIX
    assert policy_stream.ROUTE_HEADER.startswith(INTERNAL_HEADER_PREFIX)


def test_the_limit_headers_envoy_adds_are_the_ones_the_upstream_filter_removes() -> None:
    config = yaml.safe_load(render_envoy_config(OPTIONS))
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    (vhost,) = hcm["typed_config"]["route_config"]["virtual_hosts"]
    added = [h["header"]["key"] for h in vhost["response_headers_to_add"]]
    assert added == [
        f"{RATE_LIMIT_HEADER_PREFIX}{kind}-{unit}"
        for unit in ("requests", "tokens")
        for kind in ("limit", "remaining", "reset")
    ]


def test_no_sidecar_ports_is_an_error() -> None:
    with pytest.raises(ValueError, match="sidecar port"):
        render_envoy_config(
            EnvoyOptions(listen_port=1, admin_port=2, upstream_port=3, sidecar_ports=())
        )


@pytest.mark.e2e
def test_envoy_validates_the_rendered_config(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    # Envoy opens the access log files when it loads a config: a temporary directory
    # stands in for the shipped volume, which need not exist on this machine.
    options = dataclasses.replace(OPTIONS, access_log_dir=str(tmp_path))
    path.write_text(render_envoy_config(options))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_checked_in_config_matches_the_template() -> None:
    shipped = Path(__file__).parents[2] / "envoy" / "envoy.yaml"
    expected = render_envoy_config(
        EnvoyOptions(
            listen_port=10000,
            admin_port=9901,
            upstream_port=8081,
            sidecar_ports=(50051, 50052),
            listen_address="0.0.0.0",
            routes=(("secondary", "127.0.0.1", 8082),),
        )
    )
    assert shipped.read_text() == expected, "run the command in envoy/README.md"


def test_a_cds_path_adds_watched_file_based_cds(tmp_path: Path) -> None:

    base = EnvoyOptions(listen_port=1, admin_port=2, upstream_port=3, sidecar_ports=(4,))
    assert "dynamic_resources" not in render_envoy_config(base)
    path = str(tmp_path / "cds" / "clusters.json")
    config = yaml.safe_load(
        render_envoy_config(
            EnvoyOptions(
                listen_port=1, admin_port=2, upstream_port=3, sidecar_ports=(4,), cds_path=path
            )
        )
    )
    source = config["dynamic_resources"]["cds_config"]["path_config_source"]
    assert source == {"path": path, "watched_directory": {"path": str(tmp_path / "cds")}}


def test_the_cds_file_is_replaced_atomically_and_only_on_change(tmp_path: Path) -> None:

    path = tmp_path / "clusters.json"
    assert write_cds_file(path, [{"name": "a"}])
    assert not write_cds_file(path, [{"name": "a"}])
    assert write_cds_file(path, [])
    assert yaml.safe_load(path.read_text()) == {"resources": []}
    assert [p.name for p in tmp_path.iterdir()] == ["clusters.json"]  # no temp file left


ACCOUNTS = (
    ProviderAccount(
        name="openai-prod",
        provider="openai",
        base_host="api.openai.com",
        credential_ref="openai-prod",
    ),
)


def test_account_clusters_are_rendered_and_routes_reach_them_safely() -> None:
    options = dataclasses.replace(OPTIONS, accounts=ACCOUNTS, credentials_dir="/creds")
    config = yaml.safe_load(render_envoy_config(options))
    assert config["node"]["id"] and config["node"]["cluster"]  # file-based SDS needs them
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    account = clusters["openai-prod"]
    assert account["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    assert "@type" not in account
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    assert hcm["http_filters"][-1]["typed_config"]["suppress_envoy_headers"] is True
    for route in hcm["route_config"]["virtual_hosts"][0]["routes"]:
        action = route["route"]
        assert action["auto_host_rewrite"] is True
        retry = action["retry_policy"]
        assert retry["retriable_status_codes"] == [429, 503]
        assert "per_try_timeout" not in retry  # it would cut long streams
        assert retry["rate_limited_retry_back_off"]["reset_headers"][0]["name"] == "retry-after"


def test_an_account_named_like_a_route_is_refused() -> None:
    clash = dataclasses.replace(ACCOUNTS[0], name="upstream")
    with pytest.raises(ValueError, match="distinct"):
        render_envoy_config(dataclasses.replace(OPTIONS, accounts=(clash,)))


@pytest.mark.e2e
def test_envoy_validates_a_config_with_accounts(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openai-prod.yaml").write_text(secret_file_text("openai-prod", "sk-1"))
    options = dataclasses.replace(
        OPTIONS, accounts=ACCOUNTS, credentials_dir=str(creds), access_log_dir=str(tmp_path)
    )
    path = tmp_path / "envoy.yaml"
    path.write_text(render_envoy_config(options))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


ACCOUNTS_WITH_GROUP = """
provider_accounts:
  - {name: openai-prod, provider: openai, base_host: api.openai.com, credential_ref: openai-prod}
  - {name: openai-spare, provider: openai, base_host: api.openai.com, credential_ref: openai-spare}
fallback_groups:
  - {name: openai-any, accounts: [openai-prod, openai-spare]}
"""


def test_render_envoy_renders_the_fallback_groups_of_the_accounts_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(ACCOUNTS_WITH_GROUP)
    parser = build_parser()
    args = parser.parse_args(["render-envoy", "--accounts", str(accounts)])
    assert args.func(args) == 0
    clusters = yaml.safe_load(capsys.readouterr().out)["static_resources"]["clusters"]
    (group,) = [c for c in clusters if c["name"] == "openai-any"]
    assert group["cluster_type"]["typed_config"]["clusters"] == ["openai-prod", "openai-spare"]
    # A group naming an unknown account: refused with the group and the account named.
    accounts.write_text(ACCOUNTS_WITH_GROUP.replace("[openai-prod, openai-spare]", "[a, b]"))
    args = parser.parse_args(["render-envoy", "--accounts", str(accounts)])
    assert args.func(args) == 2
    assert "fallback group 'openai-any': no enabled account 'a'" in capsys.readouterr().err
