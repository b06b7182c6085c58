"""policy-sidecar: an Envoy ext_proc sidecar that governs LLM API traffic."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
