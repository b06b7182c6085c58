"""What the deploy files name exists in the project: environment variables the code
reads, files, the image's layout, the seeded key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from . import contract
from .helpers import ENV_NAME, code_env_vars, compose_services, k8s_documents, pod_containers

DEPLOY_FILES = sorted(
    [
        contract.COMPOSE_FILE,
        contract.DOCKERFILE,
        *(contract.ROOT / "deploy").rglob("*.yaml"),
        *(contract.ROOT / "deploy").rglob("*.yml"),
        *(contract.ROOT / "deploy").rglob("*.sql"),
        contract.DEPLOYMENT_DOC,
    ]
)


def test_deploy_files_exist() -> None:
    for path in DEPLOY_FILES:
        assert path.is_file(), path
    assert len(DEPLOY_FILES) >= 12


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: str(p.relative_to(contract.ROOT)))
def test_every_env_var_named_is_read_by_the_code(path: Path) -> None:
    known = code_env_vars() | contract.PENDING_ENV_VARS
    unknown = set(ENV_NAME.findall(path.read_text())) - known
    assert not unknown, f"{path.name} names variables the code does not read: {sorted(unknown)}"


def test_env_vars_set_in_compose_and_k8s_are_known() -> None:
    # The same check on the parsed objects, so a name split across lines cannot slip by.
    known = code_env_vars() | contract.PENDING_ENV_VARS
    names = set()
    for service in compose_services().values():
        names.update(k for k in service.get("environment", {}) if k.startswith("POLICY_"))
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            for container in pod_containers(doc):
                names.update(e["name"] for e in container.get("env", []))
    assert names, "no variables found"
    assert names <= known, sorted(names - known)


def _dockerfile_stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for raw in contract.DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_non_root() -> None:
    text = contract.DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    builder, final = _dockerfile_stages()
    assert builder[0] == "FROM ${PYTHON_IMAGE} AS builder"
    assert final[0] == "FROM ${PYTHON_IMAGE} AS final"
    assert any("pip install ." in line for line in builder)
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    final_text = "\n".join(final)
    for tool in ("apt-get install", "build-essential", "gcc", "pip install"):
        assert tool not in final_text, tool
    users = [line for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    assert 'ENTRYPOINT ["policy-sidecar"]' in final
    # Compose and the pod run the image as this user.
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            context = doc["spec"]["template"]["spec"]["securityContext"]
            assert f"USER {context['runAsUser']}:{context['runAsGroup']}" == users[-1]


def test_dockerfile_copies_exist_and_are_not_dockerignored() -> None:
    ignored = {
        line.strip()
        for line in contract.DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copies = [
        line.split()[1:-1]
        for stage in _dockerfile_stages()
        for line in stage
        if line.startswith("COPY ") and "--from=" not in line
    ]
    sources = [src for group in copies for src in group]
    assert "policy_sidecar" in " ".join(sources)
    for source in sources:
        assert (contract.ROOT / source).exists(), source
        parts = Path(source).parts
        for i in range(1, len(parts) + 1):
            assert "/".join(parts[:i]) not in ignored, f"{source} is in .dockerignore"
    # probe.py lands where compose and the pod call it.
    assert (
        f"COPY deploy/docker/probe.py {contract.PROBE_IN_IMAGE}" in contract.DOCKERFILE.read_text()
    )


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = set(contract.DOCKERIGNORE.read_text().split())
    assert {".git", "tests", ".venv", "**/__pycache__"} <= ignored


def test_probe_path_is_the_same_everywhere() -> None:
    for path in (contract.COMPOSE_FILE, *contract.K8S_DIR.glob("*.yaml")):
        for match in re.findall(r"/opt/[\w./-]+", path.read_text()):
            assert match == contract.PROBE_IN_IMAGE, f"{path.name}: {match}"


def test_seed_stores_the_hash_of_the_documented_key() -> None:
    from policy_sidecar.identity.keys import hash_api_key

    seed = contract.SEED_FILE.read_text()
    assert hash_api_key(contract.COMPOSE_DEMO_KEY) == contract.COMPOSE_DEMO_KEY_SHA256
    assert contract.COMPOSE_DEMO_KEY_SHA256 in seed
    assert contract.COMPOSE_DEMO_KEY in seed  # the comment tells the reader the secret
    for doc in (contract.COMPOSE_FILE, contract.DEPLOYMENT_DOC):
        assert contract.COMPOSE_DEMO_KEY in doc.read_text(), doc.name


def test_deployment_doc_links_exist() -> None:
    text = contract.DEPLOYMENT_DOC.read_text()
    for link in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (contract.DEPLOYMENT_DOC.parent / link).resolve().exists(), link
    readme = (contract.ROOT / "README.md").read_text()
    assert "docs/deployment.md" in readme
