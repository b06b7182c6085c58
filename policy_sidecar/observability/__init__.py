"""Logs and the sidecar's Prometheus metrics; the core returns facts, the edges record them."""

from __future__ import annotations
