"""Azure OpenAI: deployment-scoped paths (model = deployment) and the v1 paths.

Wire format is OpenAI's; Azure adds ``prompt_filter_results`` / ``content_filter_results``
chunks, which carry no usage and are skipped like any other chunk.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from policy_sidecar.providers.base import ParsedRequest, Route
from policy_sidecar.providers.openai import PARSERS, OpenAIWireFormat

_DEPLOYMENT = re.compile(
    r"^/openai/deployments/(?P<deployment>[^/?]+)/(?P<op>chat/completions|completions|embeddings)/?$",
    re.IGNORECASE,
)
_V1 = {
    "/openai/v1/chat/completions": "chat",
    "/openai/v1/completions": "completions",
    "/openai/v1/embeddings": "embeddings",
    "/openai/v1/responses": "responses",
    "/openai/responses": "responses",
}
_OPS = {"chat/completions": "chat", "completions": "completions", "embeddings": "embeddings"}


class AzureOpenAIProvider(OpenAIWireFormat):
    """``*.openai.azure.com``; the deployment in the path stands in for a missing ``model``."""

    name = "azure"

    def match(self, method: str, path: str) -> Route | None:
        if method != "POST":
            return None
        bare, _, query = path.partition("?")
        versions = parse_qs(query).get("api-version")
        version = versions[0] if versions else None
        found = _DEPLOYMENT.match(bare)
        if found:
            return Route(
                self.name,
                _OPS[found["op"].lower()],
                model_from_path=found["deployment"],
                api_version=version,
            )
        operation = _V1.get(bare.rstrip("/").lower())
        return Route(self.name, operation, api_version=version) if operation else None

    def parse_request(self, route: Route, body: Mapping[str, Any]) -> ParsedRequest:
        return PARSERS[route.operation](body, model_default=route.model_from_path)
