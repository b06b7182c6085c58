"""Every Envoy configuration the project ships is what render-envoy prints, and the real
Envoy accepts it."""

from __future__ import annotations

from pathlib import Path

from policy_sidecar.envoy.accounts_file import load_accounts_file
from policy_sidecar.envoy.upstreams import secret_file_text

from . import contract
from .helpers import (
    compose_services,
    envoy_validate,
    k8s_envoy_config,
    k8s_object,
    listen_port,
    render,
    sidecar_endpoints,
    upstream_address,
)


def test_compose_envoy_config_is_the_rendered_one() -> None:
    assert contract.COMPOSE_ENVOY_FILE.read_text() == render(contract.COMPOSE_RENDER_ARGS)


def test_k8s_configmap_envoy_config_is_the_rendered_one() -> None:
    assert k8s_envoy_config() == render(contract.K8S_RENDER_ARGS)


def test_envoy_accepts_every_shipped_config(tmp_path: Path) -> None:
    # compose: the key files shipped in the repository (placeholders), where they are mounted.
    compose = contract.COMPOSE_ENVOY_FILE.read_text().replace(
        contract.COMPOSE_CREDENTIALS_DIR,
        str(contract.ROOT / contract.COMPOSE_CREDENTIALS_SOURCE),
    )
    envoy_validate(compose, tmp_path, "compose")
    # Envoy refuses a config whose key files are missing: the Secret's files, here.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for account in load_accounts_file(contract.ROOT / contract.K8S_ACCOUNTS_FILE):
        (credentials / f"{account.credential_ref}.yaml").write_text(
            secret_file_text(account.credential_ref, "placeholder")
        )
    k8s = k8s_envoy_config().replace(contract.K8S_CREDENTIALS_DIR, str(credentials))
    envoy_validate(k8s, tmp_path, "k8s-configmap")
    envoy_validate((contract.ROOT / "envoy" / "envoy.yaml").read_text(), tmp_path, "envoy-dir")


def test_k8s_mounts_a_key_for_every_provider_account() -> None:
    gateway = k8s_object("Deployment", "policy-sidecar")
    pod = gateway["spec"]["template"]["spec"]
    (volume,) = [
        v
        for v in pod["volumes"]
        if v.get("secret", {}).get("secretName") == (contract.K8S_CREDENTIALS_SECRET)
    ]
    (envoy,) = [c for c in pod["containers"] if c["name"] == "envoy"]
    (mount,) = [m for m in envoy["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == contract.K8S_CREDENTIALS_DIR
    assert "subPath" not in mount  # a subPath mount never sees a Secret update
    secret = k8s_object("Secret", contract.K8S_CREDENTIALS_SECRET)
    accounts = load_accounts_file(contract.ROOT / contract.K8S_ACCOUNTS_FILE)
    assert sorted(secret["stringData"]) == sorted(f"{a.credential_ref}.yaml" for a in accounts)


def test_compose_mounts_a_placeholder_key_for_every_provider_account() -> None:
    (envoy,) = [s for name, s in compose_services().items() if name == "envoy"]
    mounts = [v.split(":") for v in envoy["volumes"]]
    assert [
        contract.COMPOSE_CREDENTIALS_SOURCE,
        contract.COMPOSE_CREDENTIALS_DIR,
        "ro",
    ] in mounts
    accounts = load_accounts_file(contract.ROOT / contract.COMPOSE_ACCOUNTS_FILE)
    assert [a.provider for a in accounts] == ["openai"]
    directory = contract.ROOT / contract.COMPOSE_CREDENTIALS_SOURCE
    shipped = sorted(p.name for p in directory.iterdir())
    assert shipped == sorted(f"{a.credential_ref}.yaml" for a in accounts)
    for account in accounts:
        text = (directory / f"{account.credential_ref}.yaml").read_text()
        # The file Envoy expects, with a placeholder: never a real key in the repository.
        assert text == secret_file_text(account.credential_ref, "sk-placeholder-replace-me")


def test_envoy_reaches_the_sidecar_on_localhost_in_every_deployment() -> None:
    # compose: Envoy shares the sidecar's network namespace; k8s: same pod.
    expected = [("127.0.0.1", port) for port in contract.SIDECAR_PORTS]
    for text in (contract.COMPOSE_ENVOY_FILE.read_text(), k8s_envoy_config()):
        assert sidecar_endpoints(text) == expected
        assert listen_port(text) == contract.ENVOY_LISTEN_PORT
        assert upstream_address(text) == ("fake-provider", contract.FAKE_PROVIDER_PORT)
