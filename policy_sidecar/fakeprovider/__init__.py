"""A fake LLM provider for the demo, the tests and the benchmarks."""

from __future__ import annotations

from policy_sidecar.fakeprovider.app import create_app, run_fake_provider

__all__ = ["create_app", "run_fake_provider"]
