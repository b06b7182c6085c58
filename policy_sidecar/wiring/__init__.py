"""The one place that builds the sidecar, for either source of truth, and its settings."""

from __future__ import annotations
