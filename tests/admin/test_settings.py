from __future__ import annotations

from pathlib import Path

import pytest

from policy_sidecar.admin.settings import AdminSettings
from policy_sidecar.wiring.settings import SettingsError

DB = {"POLICY_SIDECAR_DATABASE_URL": "postgresql://x/y"}
TOKEN = "ops:admin:0123456789abcdef"


def test_defaults_and_tokens_from_env_and_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# operators\nviewer:readonly:fedcba9876543210\n")
    settings = AdminSettings.from_env(
        {
            **DB,
            "POLICY_SIDECAR_ADMIN_TOKENS": f"{TOKEN}, ci:admin:abcdefabcdefabcdef",
            "POLICY_SIDECAR_ADMIN_TOKENS_FILE": str(tokens),
        }
    )
    assert [(t.name, t.role) for t in settings.tokens] == [
        ("ops", "admin"),
        ("ci", "admin"),
        ("viewer", "readonly"),
    ]
    assert (settings.port, settings.metrics_port, settings.tls_cert) == (50070, 9470, None)
    assert "0123456789abcdef" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({}, "DATABASE_URL is required"),
        (DB, "no admin tokens"),
        ({**DB, "POLICY_SIDECAR_ADMIN_TOKENS": "ops:admin:short"}, "shorter than 16"),
        ({**DB, "POLICY_SIDECAR_ADMIN_TOKENS": f"{TOKEN},{TOKEN}"}, "must be unique"),
        ({**DB, "POLICY_SIDECAR_ADMIN_TOKENS_FILE": "/nonexistent"}, "No such file"),
        (
            {**DB, "POLICY_SIDECAR_ADMIN_TOKENS": TOKEN, "POLICY_SIDECAR_ADMIN_TLS_CERT": "c"},
            "go together",
        ),
        ({**DB, "POLICY_SIDECAR_ADMIN_TOKENS": TOKEN, "POLICY_SIDECAR_ADMIN_PORT": "x"}, "integer"),
    ],
)
def test_errors(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        AdminSettings.from_env(env)
