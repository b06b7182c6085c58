"""What a model deployment changes in a request before it goes upstream: path and model.

The client calls a public model name on the provider's own API; the deployment says
where that model really is:

- **Azure OpenAI** (OpenAI's wire format, so a client may call the OpenAI paths too).
  With an ``api_version`` on the deployment, chat, completions and embeddings go to
  ``/openai/deployments/{azure_deployment}/{operation}?api-version={api_version}`` (the
  client's other query parameters kept, its own ``api-version`` replaced). Without one,
  a client calling a deployment path keeps its ``api-version`` and gets the deployment's
  name in the path; every other call goes to ``/openai/v1/{operation}`` with the name as
  the body's ``model``. The name is ``azure_deployment``, else ``upstream_model``.
- **Gemini**: the model is in the path, ``/{version}/models/{upstream_model}:{method}``,
  the method (``generateContent``, ``streamGenerateContent``, ``embedContent``) and the
  query (``alt=sse``) as the client sent them.
- **Every other provider**: the body's ``model`` becomes the deployment's
  ``upstream_model`` (client says ``gpt-4o``, the provider gets ``gpt-4o-2024-08-06``).

Pure: given the deployment, the route the request matched, the path as it goes upstream
and the request's JSON body, ``upstream_request`` gives the new ``:path`` and the new
body, each None when unchanged. A body is re-encoded only when a field really changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from policy_sidecar.providers._body import patched_body
from policy_sidecar.providers.base import Route
from policy_sidecar.providers.paths import canonical_path, split_path

if TYPE_CHECKING:
    from policy_sidecar.catalog.deployments import ModelDeployment

__all__ = ["UpstreamRequest", "upstream_request"]

# The operations an Azure deployment path serves, and the v1 paths.
_AZURE_DEPLOYMENT_OPS: Final = {
    "chat": "chat/completions",
    "completions": "completions",
    "embeddings": "embeddings",
}
_AZURE_V1_OPS: Final = {**_AZURE_DEPLOYMENT_OPS, "responses": "responses"}
_OPENAI_FORMAT: Final = frozenset({"openai", "azure"})
_GEMINI_PATH: Final = re.compile(
    r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$",
    re.IGNORECASE,
)
_API_VERSION: Final = "api-version"


# Providers that speak one wire format: a model deployed on Azure OpenAI may be called
# on OpenAI's paths (the deployment's path is built here) and the other way round.
_SAME_API: Final = ({"openai", "azure"},)


def same_api(route_provider: str, deployment_provider: str) -> bool:
    """Whether a request on ``route_provider``'s API can go to a model deployed on
    ``deployment_provider`` (the request is parsed, and the answer metered, as the
    route's provider: a Gemini request for an OpenAI model would be neither)."""
    if route_provider == deployment_provider:
        return True
    return any({route_provider, deployment_provider} <= group for group in _SAME_API)


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The new ``:path`` and body; None: that part goes upstream as the client sent it."""

    path: str | None = None
    body: bytes | None = None


def upstream_request(
    deployment: ModelDeployment | None,
    route: Route,
    path: str,
    body: Mapping[str, Any],
    patch: Mapping[str, Any] | None = None,
    *,
    raw: bytes = b"",
    content_type: str | None = None,
) -> UpstreamRequest:
    """The request as ``deployment`` wants it; ``patch``: other fields to set in the
    body (the provider's own, e.g. asking a stream for its usage). ``raw`` and
    ``content_type``: the body as received, so an upload form keeps every byte but
    the fields that change."""
    fields = dict(patch or {})
    new_path: str | None = None
    if deployment is not None:
        new_path, model = _target(deployment, route, path)
        if model is not None and "model" in body:
            fields["model"] = model
    changed = {k: v for k, v in fields.items() if k not in body or body[k] != v}
    return UpstreamRequest(
        path=new_path if new_path != path else None,
        body=patched_body(raw, content_type, body, changed) if changed else None,
    )


def _target(deployment: ModelDeployment, route: Route, path: str) -> tuple[str | None, str | None]:
    """(the new path or None, the body's model or None)."""
    if deployment.provider == "azure" and route.provider in _OPENAI_FORMAT:
        return _azure(deployment, route, path)
    if deployment.provider == "gemini" and route.provider == "gemini":
        return _gemini(deployment.upstream_model, path), None
    return None, deployment.upstream_model


def _azure(deployment: ModelDeployment, route: Route, path: str) -> tuple[str | None, str | None]:
    name = deployment.azure_deployment or deployment.upstream_model
    _, query = split_path(path)
    client_deployment_path = route.provider == "azure" and route.model_from_path is not None
    version = deployment.api_version or (route.api_version if client_deployment_path else None)
    operation = _AZURE_DEPLOYMENT_OPS.get(route.operation)
    if version and operation:
        target = f"/openai/deployments/{quote(name, safe='')}/{operation}"
        return target + _query(query, version), None
    v1 = _AZURE_V1_OPS.get(route.operation)
    if v1 is None:
        return None, None
    return f"/openai/v1/{v1}" + (f"?{query}" if query else ""), name


def _query(query: str, api_version: str) -> str:
    """``query`` without the client's ``api-version``, the deployment's appended."""
    kept = [p for p in query.split("&") if p and p.partition("=")[0] != _API_VERSION]
    return "?" + "&".join([*kept, f"{_API_VERSION}={quote(api_version, safe='')}"])


def _gemini(model: str, path: str) -> str | None:
    found = _GEMINI_PATH.match(canonical_path(path))
    if found is None or found["model"] == model:
        return None
    _, query = split_path(path)
    target = f"/{found['version']}/models/{quote(model, safe='')}:{found['method']}"
    return target + (f"?{query}" if query else "")
