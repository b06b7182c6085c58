"""The private Postgres server's binaries are found, not assumed at one version."""

from __future__ import annotations

import pytest

from tests.usage.conftest import find_pg_bin


def test_the_postgres_binaries_are_found_on_this_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POLICY_SIDECAR_TEST_PG_BIN", raising=False)
    found = find_pg_bin()
    assert found is not None
    assert (found / "initdb").exists() and (found / "pg_ctl").exists()


def test_an_explicit_directory_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICY_SIDECAR_TEST_PG_BIN", "/opt/pg/bin")
    assert str(find_pg_bin()) == "/opt/pg/bin"
