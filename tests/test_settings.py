from __future__ import annotations

import pytest

from policy_sidecar.settings import Settings, SettingsError, parse_ports


def test_defaults_from_empty_environment() -> None:
    s = Settings.from_env({})
    assert (s.ports, s.inject_stream_usage, s.grace_seconds) == ((50051,), True, 10.0)


def test_values_from_environment() -> None:
    s = Settings.from_env(
        {
            "POLICY_SIDECAR_PORTS": "6000-6002",
            "POLICY_SIDECAR_INJECT_STREAM_USAGE": "off",
            "POLICY_SIDECAR_CONFIG": "/etc/ps.yaml",
            "POLICY_SIDECAR_GRACE_SECONDS": "2.5",
        }
    )
    assert s.ports == (6000, 6001, 6002)
    assert s.inject_stream_usage is False
    assert s.config_path == "/etc/ps.yaml"
    assert s.grace_seconds == 2.5


@pytest.mark.parametrize(("text", "ports"), [("1", (1,)), ("5,7", (5, 7)), ("5-6,9", (5, 6, 9))])
def test_parse_ports(text: str, ports: tuple[int, ...]) -> None:
    assert parse_ports(text) == ports


@pytest.mark.parametrize("text", ["", "x", "6-5", "0", "70000", "5,5"])
def test_bad_ports(text: str) -> None:
    with pytest.raises(SettingsError, match="POLICY_SIDECAR_PORTS"):
        parse_ports(text)


@pytest.mark.parametrize(
    ("name", "value"),
    [("INJECT_STREAM_USAGE", "maybe"), ("GRACE_SECONDS", "soon"), ("GRACE_SECONDS", "-1")],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"POLICY_SIDECAR_{name}"):
        Settings.from_env({f"POLICY_SIDECAR_{name}": value})
