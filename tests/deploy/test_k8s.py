"""Kubernetes manifests: valid against the API schemas (offline, kubernetes-validate's
bundled schemas, strict: unknown fields are errors) and consistent with each other."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from . import contract
from .helpers import k8s_documents, k8s_object, parse_cli, pod_containers, subcommands, workloads

DOCS = k8s_documents()


@pytest.mark.parametrize(
    "doc",
    [d for _, d in DOCS],
    ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in DOCS],
)
def test_manifest_matches_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, contract.KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {path}: {exc.message}")


def test_the_validator_rejects_a_bad_manifest() -> None:
    """The schema check above has teeth: an unknown field and a wrong type both fail."""
    bad = yaml.safe_load(yaml.safe_dump(k8s_object("Deployment", "policy-sidecar")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["cmd"] = ["x"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, contract.KUBERNETES_VERSION, strict=True)
    bad = yaml.safe_load(yaml.safe_dump(k8s_object("Deployment", "policy-sidecar")))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, contract.KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((contract.K8S_DIR / "kustomization.yaml").read_text())
    files = {p.name for p in contract.K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == "policy-sidecar"
    assert [i["name"] for i in kustomization["images"]] == [contract.APP_IMAGE_NAME]
    for _, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "policy-sidecar"


def test_every_container_runs_our_image_with_a_real_command() -> None:
    known = subcommands()
    for doc in workloads():
        for container in pod_containers(doc):
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert container["image"].split(":")[0] == contract.APP_IMAGE_NAME, where
            if "command" in container:  # Envoy from the same image
                assert container["command"] == ["envoy"], where
                continue
            args = container["args"]
            assert args[0] in known | contract.PENDING_SUBCOMMANDS, where
            if args[0] in known:
                parse_cli(args)


def _gateway() -> dict[str, Any]:
    spec: dict[str, Any] = k8s_object("Deployment", "policy-sidecar")["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_sidecar_is_a_native_sidecar_beside_envoy() -> None:
    pod = _gateway()
    (sidecar,) = pod["initContainers"]
    (envoy,) = pod["containers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"][0] == "serve"
    args = parse_cli(sidecar["args"])
    low, high = args.ports.split("-")
    assert tuple(range(int(low), int(high) + 1)) == contract.SIDECAR_PORTS
    # The kubelet's gRPC probes reach the pod IP, so the sidecar binds all addresses.
    assert _env(sidecar)["POLICY_SIDECAR_HOST"] == "0.0.0.0"
    ports = {p["containerPort"] for p in sidecar["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert sidecar[probe]["grpc"]["port"] in contract.SIDECAR_PORTS, probe
        assert sidecar[probe]["grpc"]["port"] in ports
    assert sidecar["readinessProbe"]["grpc"]["port"] == contract.SIDECAR_PORTS[0]
    assert {p["containerPort"] for p in envoy["ports"]} == {contract.ENVOY_LISTEN_PORT}
    for container in (sidecar, envoy):
        for kind in ("requests", "limits"):
            assert set(container["resources"][kind]) == {"cpu", "memory"}


def test_termination_order_fits_the_grace_period() -> None:
    pod = _gateway()
    (sidecar,) = pod["initContainers"]
    (envoy,) = pod["containers"]
    pre_stop = " ".join(envoy["lifecycle"]["preStop"]["exec"]["command"])
    assert f"127.0.0.1:{contract.ENVOY_ADMIN_PORT}/drain_listeners?graceful" in pre_stop
    assert f"{contract.PROBE_IN_IMAGE} post" in pre_stop
    sleep = int(shlex.split(pre_stop.split("sleep")[-1])[0])
    drain = int(envoy["args"][envoy["args"].index("--drain-time-s") + 1])
    assert drain <= sleep
    sidecar_grace = float(_env(sidecar)["POLICY_SIDECAR_GRACE_SECONDS"])
    # Envoy drains, then exits; only then does the sidecar get SIGTERM and its grace.
    assert sleep + sidecar_grace + 5 <= pod["terminationGracePeriodSeconds"]


def test_envoy_config_comes_from_the_configmap() -> None:
    pod = _gateway()
    (envoy,) = pod["containers"]
    config = envoy["args"][envoy["args"].index("-c") + 1]
    mounts = {m["name"]: m["mountPath"] for m in envoy["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (name,) = [n for n, path in mounts.items() if config.startswith(path + "/")]
    configmap = k8s_object("ConfigMap", volumes[name]["configMap"]["name"])
    assert Path(config).name in configmap["data"]


def test_secret_references_exist() -> None:
    secrets = {d["metadata"]["name"]: d for _, d in DOCS if d["kind"] == "Secret"}
    for doc in workloads():
        pod = doc["spec"]["template"]["spec"]
        for container in pod_containers(doc):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets[ref["name"]]["stringData"], env["name"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets


def test_secrets_are_placeholders() -> None:
    for _, doc in DOCS:
        if doc["kind"] == "Secret":
            for key, value in doc["stringData"].items():
                assert "CHANGE-ME" in value or "example.internal" in value, key


def test_prometheus_annotations_point_at_declared_metrics_ports() -> None:
    expected = {
        "policy-sidecar": contract.SIDECAR_METRICS_PORT,
        "policy-sidecar-admin": contract.ADMIN_METRICS_PORT,
    }
    for name, port in expected.items():
        doc = k8s_object("Deployment", name)
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        declared = {p["containerPort"] for c in pod_containers(doc) for p in c.get("ports", [])}
        assert port in declared, name


def test_services_select_pods_and_target_named_ports() -> None:
    deployments = {d["metadata"]["name"]: d for d in workloads() if d["kind"] == "Deployment"}
    for _, service in DOCS:
        if service["kind"] != "Service":
            continue
        selector = service["spec"]["selector"]
        (target,) = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        port_names = {p.get("name") for c in pod_containers(target) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, service["metadata"]["name"]


def test_admin_service_and_migration_job() -> None:
    admin = k8s_object("Deployment", "policy-sidecar-admin")
    (container,) = admin["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["admin"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["http-ui"] == contract.ADMIN_UI_PORT
    assert _env(container)["POLICY_SIDECAR_UI_PORT"] == str(contract.ADMIN_UI_PORT)
    # The console's /healthz answers 200 only when the admin gRPC service is SERVING.
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-ui"}
    assert container["livenessProbe"]["grpc"]["port"] == contract.ADMIN_GRPC_PORT
    service = k8s_object("Service", "policy-sidecar-admin")
    assert [p["port"] for p in service["spec"]["ports"]] == [
        contract.ADMIN_GRPC_PORT,
        contract.ADMIN_UI_PORT,
    ]
    policy = k8s_object("NetworkPolicy", "policy-sidecar-admin")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert {contract.ADMIN_GRPC_PORT, contract.ADMIN_UI_PORT} <= allowed
    job = k8s_object("Job", "policy-sidecar-migrate")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["migrate"]
    assert "POLICY_SIDECAR_DATABASE_URL" in _env(migrate)


def test_envoy_service_reaches_the_listener() -> None:
    service = k8s_object("Service", "policy-sidecar")
    (port,) = service["spec"]["ports"]
    (envoy,) = _gateway()["containers"]
    named = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    assert named[port["targetPort"]] == contract.ENVOY_LISTEN_PORT
