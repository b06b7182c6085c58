"""Envoy configuration rendering and the Envoy process."""

from __future__ import annotations

from policy_sidecar.envoy.render import EnvoyOptions, render_envoy_config

__all__ = ["EnvoyOptions", "render_envoy_config"]
