"""The admin gRPC service (`policy-sidecar admin`): applications, configs, API keys,
models, policies and usage, for operators with grpcurl and for a future web UI."""

from __future__ import annotations

from policy_sidecar.admin.server import (
    SERVICE_NAMES,
    AdminServer,
    serve_admin,
    start_admin_server,
)
from policy_sidecar.admin.settings import AdminSettings

__all__ = ["SERVICE_NAMES", "AdminServer", "AdminSettings", "serve_admin", "start_admin_server"]
