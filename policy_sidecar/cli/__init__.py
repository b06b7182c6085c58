"""The command line: serve, demo, fake-provider, migrate, admin, envoy-config."""

from __future__ import annotations
