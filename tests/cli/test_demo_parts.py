"""The demo's pieces that need no processes: the admin command line (with the console
hook) and the printed text. The demo itself: tests/e2e/test_demo_fresh_venv.py."""

from __future__ import annotations

from policy_sidecar.cli.demo import admin_argv, demo_text
from policy_sidecar.cli.demo_seed import DemoData

DATA = DemoData("app_1", "app_2", "ps_production_support", "ps_production_batch", "pol_1")


def test_admin_argv_passes_the_console_port_only_when_given() -> None:
    assert admin_argv(50070, None)[-3:] == ["admin", "--port", "50070"]
    assert admin_argv(50070, 8070)[-5:] == ["admin", "--port", "50070", "--ui-port", "8070"]


def test_text_names_the_console_token_curls_and_grpcurl() -> None:
    text = demo_text(
        url="http://127.0.0.1:10000",
        admin="127.0.0.1:50070",
        ui_url="http://127.0.0.1:8070/",
        token="demo-admin-token",
        data=DATA,
        notes=["Postgres: embedded"],
    )
    assert "Console: http://127.0.0.1:8070/" in text
    assert "Admin token: demo-admin-token" in text
    curls = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
    assert len(curls) == 2
    assert all("Bearer ps_production_support" in c for c in curls)
    assert '"gpt-4o-mini"' in curls[0] and '"gpt-4o"' in curls[1]
    grpcurl = next(line for line in text.splitlines() if "grpcurl" in line and "-plaintext" in line)
    assert "authorization: Bearer demo-admin-token" in grpcurl and "127.0.0.1:50070" in grpcurl
    assert text.rstrip().endswith("Press Ctrl-C to stop.")
