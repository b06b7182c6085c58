from __future__ import annotations

from pathlib import Path

import pytest

from policy_sidecar.wiring.settings import Settings, SettingsError, parse_ports


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
    [
        ("INJECT_STREAM_USAGE", "maybe"),
        ("GRACE_SECONDS", "soon"),
        ("GRACE_SECONDS", "-1"),
        ("UNKNOWN_PATHS", "allow"),
        ("UNPRICED", "allow"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"POLICY_SIDECAR_{name}"):
        Settings.from_env({f"POLICY_SIDECAR_{name}": value})


@pytest.mark.parametrize(
    ("value", "rule"), [(None, "deny"), ("deny", "deny"), ("passthrough", "passthrough")]
)
def test_unknown_paths_are_denied_unless_set(value: str | None, rule: str) -> None:
    env = {} if value is None else {"POLICY_SIDECAR_UNKNOWN_PATHS": value}
    assert Settings.from_env(env).unknown_paths == rule


@pytest.mark.parametrize(
    ("value", "rule"),
    [(None, "deny"), ("deny", "deny"), ("allow_and_report", "allow_and_report")],
)
def test_unpriced_models_are_denied_unless_set(value: str | None, rule: str) -> None:
    env = {} if value is None else {"POLICY_SIDECAR_UNPRICED": value}
    assert Settings.from_env(env).unpriced == rule


def test_usage_recorder_settings() -> None:
    defaults = Settings.from_env({})
    assert (
        defaults.spool_dir,
        defaults.usage_batch_size,
        defaults.usage_batch_delay,
        defaults.usage_queue_size,
    ) == ("./spool", 500, 0.2, 100_000)
    s = Settings.from_env(
        {
            "POLICY_SIDECAR_SPOOL_DIR": "/var/spool/ps",
            "POLICY_SIDECAR_USAGE_BATCH_SIZE": "2000",
            "POLICY_SIDECAR_USAGE_BATCH_DELAY": "0.5",
            "POLICY_SIDECAR_USAGE_QUEUE_SIZE": "10",
        }
    )
    assert (s.spool_dir, s.usage_batch_size, s.usage_batch_delay, s.usage_queue_size) == (
        "/var/spool/ps",
        2000,
        0.5,
        10,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("USAGE_BATCH_SIZE", "0"), ("USAGE_BATCH_SIZE", "1.5"), ("USAGE_QUEUE_SIZE", "many"),
     ("USAGE_BATCH_DELAY", "-1")],
)  # fmt: skip
def test_bad_usage_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"POLICY_SIDECAR_{name}"):
        Settings.from_env({f"POLICY_SIDECAR_{name}": value})


def test_database_pool_size_and_metrics_settings() -> None:
    defaults = Settings.from_env({})
    assert (defaults.database_pool_size, defaults.metrics_detailed_labels) == (4, True)
    assert defaults.max_in_flight == 64
    s = Settings.from_env(
        {
            "POLICY_SIDECAR_DATABASE_POOL_SIZE": "8",
            "POLICY_SIDECAR_METRICS_DETAILED_LABELS": "off",
            "POLICY_SIDECAR_MAX_IN_FLIGHT": "16",
        }
    )
    assert (s.database_pool_size, s.metrics_detailed_labels) == (8, False)
    assert s.max_in_flight == 16
    with pytest.raises(SettingsError, match="POLICY_SIDECAR_MAX_IN_FLIGHT"):
        Settings.from_env({"POLICY_SIDECAR_MAX_IN_FLIGHT": "0"})
    with pytest.raises(SettingsError, match="POLICY_SIDECAR_DATABASE_POOL_SIZE"):
        Settings.from_env({"POLICY_SIDECAR_DATABASE_POOL_SIZE": "0"})


def test_cache_lifetimes() -> None:
    assert (Settings().policy_cache_seconds, Settings().identity_cache_seconds) == (5.0, 30.0)
    settings = Settings.from_env(
        {
            "POLICY_SIDECAR_POLICY_CACHE_SECONDS": "120",
            "POLICY_SIDECAR_IDENTITY_CACHE_SECONDS": "90.5",
        }
    )
    assert (settings.policy_cache_seconds, settings.identity_cache_seconds) == (120.0, 90.5)
    with pytest.raises(SettingsError, match="POLICY_SIDECAR_POLICY_CACHE_SECONDS"):
        Settings.from_env({"POLICY_SIDECAR_POLICY_CACHE_SECONDS": "soon"})


def test_access_log_batch_wait_defaults_to_10_ms_and_reaches_the_reader(tmp_path: Path) -> None:
    from policy_sidecar.wiring.sidecar import build_tailer

    assert Settings.from_env({}).access_log_batch_ms == 10.0
    settings = Settings.from_env(
        {
            "POLICY_SIDECAR_ACCESS_LOG_BATCH_MS": "50",
            "POLICY_SIDECAR_ACCESS_LOG_DIR": str(tmp_path / "logs"),
            "POLICY_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),
        }
    )
    assert settings.access_log_batch_ms == 50.0
    tailer = build_tailer(settings, None, None, port=50051)  # type: ignore[arg-type]
    assert tailer._poll == 0.05


@pytest.mark.parametrize("value", ["0", "-1", "1001", "nan", "inf", "soon"])
def test_access_log_batch_wait_out_of_range_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="POLICY_SIDECAR_ACCESS_LOG_BATCH_MS"):
        Settings.from_env({"POLICY_SIDECAR_ACCESS_LOG_BATCH_MS": value})
