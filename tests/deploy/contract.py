"""What the deployment files assume about the application, in one place.

Some of it is being built on other branches while these files are written: the
`admin` subcommand and its settings, and the sidecar's metrics port. When those land
with different names or ports, change them here (and in the deploy files); when they
land as assumed, remove them from the PENDING_* sets so the tests check them against
the code like everything else.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "k8s"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
COMPOSE_ENVOY_FILE = ROOT / "deploy" / "compose" / "envoy.yaml"
SEED_FILE = ROOT / "deploy" / "compose" / "seed.sql"
PROBE_FILE = ROOT / "deploy" / "docker" / "probe.py"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

# Subcommands the deploy files run that build_parser() does not have yet.
PENDING_SUBCOMMANDS: frozenset[str] = frozenset()
# POLICY_SIDECAR_* variables the deploy files set that the code does not read yet.
PENDING_ENV_VARS: frozenset[str] = frozenset()

SIDECAR_PORTS = (50051, 50052)
# POLICY_SIDECAR_METRICS_PORT default; assumed to listen on all addresses (not on
# POLICY_SIDECAR_HOST), since compose binds the sidecar to 127.0.0.1.
SIDECAR_METRICS_PORT = 9090
ADMIN_GRPC_PORT = 50070  # `policy-sidecar admin` default
ADMIN_METRICS_PORT = 9470  # admin service /metrics
ADMIN_UI_PORT = 8080  # the web console (POLICY_SIDECAR_UI_PORT in the deploy files)
ENVOY_LISTEN_PORT = 10000
ENVOY_ADMIN_PORT = 9901
FAKE_PROVIDER_PORT = 8081

# Our image: built from the Dockerfile; the tag is set at deploy time.
APP_IMAGE_NAME = "policy-sidecar"
# Where the Dockerfile puts probe.py inside the image.
PROBE_IN_IMAGE = "/opt/policy-sidecar/probe.py"

# `render-envoy` arguments each shipped Envoy config was generated with.
COMPOSE_RENDER_ARGS = [
    "render-envoy",
    "--listen-port", "10000",
    "--admin-port", "9901",
    "--upstream-host", "fake-provider",
    "--upstream-port", "8081",
    "--sidecar-ports", "50051-50052",
    "--route", "secondary=fake-provider-secondary:8082",
    "--accounts", str(ROOT / "deploy/compose/provider-accounts.yaml"),
    "--credentials-dir", "/etc/envoy/credentials",
]  # fmt: skip
# The compose gateway's provider accounts, and their key files (placeholders) mounted
# into the Envoy container.
COMPOSE_ACCOUNTS_FILE = "deploy/compose/provider-accounts.yaml"
COMPOSE_CREDENTIALS_SOURCE = "./deploy/compose/credentials"
COMPOSE_CREDENTIALS_DIR = "/etc/envoy/credentials"
K8S_RENDER_ARGS = [
    "render-envoy",
    "--listen-port", "10000",
    "--admin-port", "9901",
    "--upstream-host", "fake-provider",
    "--upstream-port", "8081",
    "--sidecar-ports", "50051-50052",
    "--accounts", str(ROOT / "deploy/provider-accounts.yaml"),
    "--credentials-dir", "/etc/envoy-credentials",
]  # fmt: skip
# The gateway pod's provider accounts, and where their keys are mounted.
K8S_ACCOUNTS_FILE = "deploy/provider-accounts.yaml"
K8S_CREDENTIALS_DIR = "/etc/envoy-credentials"
K8S_CREDENTIALS_SECRET = "policy-sidecar-provider-credentials"

# The compose demo key seeded by deploy/compose/seed.sql (public, for local use only).
COMPOSE_DEMO_KEY = "ps_dev_compose-demo-key-0123456789abcdef"
COMPOSE_DEMO_KEY_SHA256 = hashlib.sha256(COMPOSE_DEMO_KEY.encode()).hexdigest()

# Kubernetes version the manifests are validated against (native sidecars are GA in 1.33).
KUBERNETES_VERSION = "1.33.0"
