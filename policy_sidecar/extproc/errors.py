"""Error responses sent to the caller, in the provider's own error shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from policy_sidecar.extproc.responses import immediate_response
from policy_sidecar.providers.base import Provider
from policy_sidecar.providers.openai import openai_error_body

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "internal_error",
}


def error_response(
    *,
    provider: Provider | None,
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> pb.ProcessingResponse:
    error_type = _TYPES.get(status, "api_error")
    extra = dict(details or {})
    if provider is not None:
        body = provider.error_body(
            message=message, error_type=error_type, code=code, status=status, details=extra
        )
    else:
        body = openai_error_body(message=message, error_type=error_type, code=code, details=extra)
    return immediate_response(
        status=status,
        body=body,
        headers=headers,
        details=f"policy_sidecar_{code}",
        metadata=metadata,
    )
