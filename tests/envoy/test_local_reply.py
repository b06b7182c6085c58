"""The table of errors Envoy answers itself, as rendered into the configuration and
documented in docs/envoy.md."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from policy_sidecar.envoy.local_reply import ENVOY_ERRORS, ERROR_HEADER
from policy_sidecar.envoy.render import EnvoyOptions, render_envoy_config

OPTIONS = EnvoyOptions(listen_port=1, admin_port=2, upstream_port=3, sidecar_ports=(4,))
DOCS = Path(__file__).parents[2] / "docs" / "envoy.md"


def hcm() -> dict[str, object]:
    config = yaml.safe_load(render_envoy_config(OPTIONS))
    listener = config["static_resources"]["listeners"][0]
    typed: dict[str, object] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def test_every_cause_has_a_distinct_code_and_the_catch_all_is_last() -> None:
    codes = [e.code for e in ENVOY_ERRORS]
    assert len(set(codes)) == len(codes)
    assert codes[-1] == "gateway_error"


def test_each_cause_is_mapped_in_both_shapes_with_its_header() -> None:
    mappers = hcm()["local_reply_config"]["mappers"]  # type: ignore[index]
    assert len(mappers) == 2 * len(ENVOY_ERRORS)
    for i, mapper in enumerate(mappers):
        error = ENVOY_ERRORS[i % len(ENVOY_ERRORS)]
        [added] = mapper["headers_to_add"]
        assert added["header"] == {"key": ERROR_HEADER, "value": error.code}
        body = mapper["body_format_override"]
        assert body["content_type"] == "application/json"
        if i < len(ENVOY_ERRORS):  # Anthropic's shape first, on its path only
            assert body["json_format"]["type"] == "error"
            assert "/v1/messages" in str(mapper["filter"])
        assert body["json_format"]["error"]["code"] == error.code
        assert mapper.get("status_code", 0) == error.status


def test_the_sidecars_own_replies_are_left_alone() -> None:
    # The catch-all must exclude them: they already carry a provider-shaped body.
    catch_all = hcm()["local_reply_config"]["mappers"][-1]  # type: ignore[index]
    assert "!response.code_details.startsWith('policy_sidecar_')" in str(catch_all["filter"])


def test_room_is_left_above_a_hundred_headers() -> None:
    assert hcm()["common_http_protocol_options"] == {"max_headers_count": 128}


def test_docs_list_every_cause_with_its_status() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| (\w+) \|", DOCS.read_text(), re.MULTILINE)
    assert rows == [(e.code, str(e.status) if e.status else "unchanged") for e in ENVOY_ERRORS]
