"""docker-compose.yml: the services a newcomer needs, started in the right order, each
running a command the real CLI accepts. (No Docker engine here: structure only.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import contract
from .helpers import compose, compose_services, parse_cli, subcommands

EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "seed",
    "sidecar",
    "envoy",
    "admin",
    "prometheus",
    "fake-provider",
    "fake-provider-secondary",
}
APP_SERVICES = {"migrate", "sidecar", "envoy", "admin", "fake-provider", "fake-provider-secondary"}
LONG_RUNNING = EXPECTED_SERVICES - {"migrate", "seed"}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_services_present() -> None:
    assert set(compose_services()) == EXPECTED_SERVICES


def test_app_services_use_the_image_built_from_the_dockerfile() -> None:
    services = compose_services()
    for name in APP_SERVICES:
        service = services[name]
        assert service["image"].split(":")[0] == contract.APP_IMAGE_NAME, name
        assert service["build"]["context"] == "."
        assert (contract.ROOT / service["build"]["dockerfile"]).is_file()


def test_third_party_images_are_pinned() -> None:
    for name, service in compose_services().items():
        if name in APP_SERVICES:
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: pin {image!r}"


def test_every_command_is_a_real_policy_sidecar_subcommand() -> None:
    known = subcommands()
    checked = 0
    for name in APP_SERVICES:
        service = compose_services()[name]
        if "entrypoint" in service:  # Envoy from the same image
            assert service["entrypoint"] == ["envoy"], name
            continue
        command = service["command"]
        assert command[0] in known | contract.PENDING_SUBCOMMANDS, f"{name}: {command}"
        if command[0] in known:
            parse_cli(command)
            checked += 1
    assert checked >= 4


def test_start_order() -> None:
    s = compose_services()
    assert _depends(s["migrate"]) == {"postgres": "service_healthy"}
    assert _depends(s["seed"]) == {"migrate": "service_completed_successfully"}
    for name in ("sidecar", "admin"):
        assert _depends(s[name])["migrate"] == "service_completed_successfully", name
        assert _depends(s[name])["redis"] == "service_healthy", name
    assert _depends(s["sidecar"])["seed"] == "service_completed_successfully"
    assert _depends(s["envoy"]) == {
        "sidecar": "service_healthy",
        "fake-provider": "service_healthy",
        "fake-provider-secondary": "service_healthy",
    }
    for name in ("migrate", "seed"):
        assert s[name]["restart"] == "no"


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_services_have_healthchecks(name: str) -> None:
    test = compose_services()[name]["healthcheck"]["test"]
    assert test[0] == "CMD"
    if "probe.py" in " ".join(test):
        assert test[1:3] == ["python", contract.PROBE_IN_IMAGE]


def test_envoy_shares_the_sidecars_network_namespace() -> None:
    s = compose_services()
    envoy = s["envoy"]
    assert envoy["network_mode"] == "service:sidecar"
    assert "ports" not in envoy  # published on the namespace owner
    assert f"{contract.ENVOY_LISTEN_PORT}:{contract.ENVOY_LISTEN_PORT}" in s["sidecar"]["ports"]
    assert s["sidecar"]["environment"]["POLICY_SIDECAR_HOST"] == "127.0.0.1"


def test_sidecar_and_envoy_ports_agree() -> None:
    s = compose_services()
    args = parse_cli(s["sidecar"]["command"])
    low, high = args.ports.split("-")
    assert tuple(range(int(low), int(high) + 1)) == contract.SIDECAR_PORTS
    assert s["sidecar"]["environment"]["POLICY_SIDECAR_METRICS_PORT"] == str(
        contract.SIDECAR_METRICS_PORT
    )
    fake = parse_cli(s["fake-provider"]["command"])
    assert (fake.host, fake.port) == ("0.0.0.0", contract.FAKE_PROVIDER_PORT)
    assert f"{contract.ADMIN_GRPC_PORT}:{contract.ADMIN_GRPC_PORT}" in s["admin"]["ports"]
    assert f"{contract.ADMIN_UI_PORT}:{contract.ADMIN_UI_PORT}" in s["admin"]["ports"]
    assert s["admin"]["environment"]["POLICY_SIDECAR_UI_PORT"] == str(contract.ADMIN_UI_PORT)


def test_envoy_config_and_mounted_files_exist() -> None:
    s = compose_services()
    command = s["envoy"]["command"]
    config_in_container = command[command.index("-c") + 1]
    mounts = {}
    for name, service in s.items():
        for volume in service.get("volumes", []):
            source, target, *_ = volume.split(":")
            if source.startswith("./"):
                # Files, and the compose Envoy's credentials directory.
                assert (contract.ROOT / source).exists(), f"{name}: {source}"
                mounts[(name, target)] = contract.ROOT / source
    assert mounts[("envoy", config_in_container)] == contract.COMPOSE_ENVOY_FILE
    assert mounts[("prometheus", "/etc/prometheus/prometheus.yml")] == contract.PROMETHEUS_FILE
    seed_command = s["seed"]["command"]
    assert mounts[("seed", seed_command[seed_command.index("-f") + 1])] == contract.SEED_FILE


def test_stop_grace_covers_the_sidecars_grace_seconds() -> None:
    sidecar = compose_services()["sidecar"]
    grace = float(sidecar["environment"]["POLICY_SIDECAR_GRACE_SECONDS"])
    assert float(sidecar["stop_grace_period"].removesuffix("s")) > grace


def test_database_url_matches_the_postgres_service() -> None:
    c = compose()
    pg = c["services"]["postgres"]["environment"]
    url = (
        f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{pg['POSTGRES_DB']}"
    )
    for name in ("migrate", "sidecar", "admin"):
        assert c["services"][name]["environment"]["POLICY_SIDECAR_DATABASE_URL"] == url
    assert c["services"]["seed"]["command"][0] == url


def test_prometheus_scrapes_the_sidecar_and_admin() -> None:
    import yaml

    config = yaml.safe_load(contract.PROMETHEUS_FILE.read_text())
    targets = {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets["policy-sidecar"] == f"sidecar:{contract.SIDECAR_METRICS_PORT}"
    assert targets["policy-sidecar-admin"] == f"admin:{contract.ADMIN_METRICS_PORT}"
    for target in targets.values():
        host = target.split(":")[0]
        assert host == "localhost" or host in compose_services()


def test_compose_file_names_only_files_that_exist() -> None:
    text = contract.COMPOSE_FILE.read_text()
    for word in text.split():
        if word.startswith("./deploy/"):
            assert Path(contract.ROOT / word.split(":")[0]).exists(), word


def _compose_schema_errors(document: dict[str, Any]) -> list[str]:
    import json

    import jsonschema

    schema = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.path)}: {e.message}" for e in validator.iter_errors(document)
    ]


def test_compose_file_matches_the_compose_spec_schema() -> None:
    document = dict(compose())
    # The vendored schema predates the top-level `name` (see schemas/README.md).
    assert document.pop("name") == "policy-sidecar"
    assert _compose_schema_errors(document) == []


def test_the_compose_schema_rejects_a_bad_file() -> None:
    document = dict(compose())
    document.pop("name")
    services = dict(document["services"])
    services["sidecar"] = {**services["sidecar"], "depends_on": {"redis": {"condition": "up"}}}
    services["envoy"] = {**services["envoy"], "helthcheck": {}}
    errors = _compose_schema_errors({**document, "services": services})
    assert len(errors) == 2, errors
