"""Errors Envoy answers itself, as provider-shaped JSON naming their cause.

Envoy answers some requests without the sidecar or the provider: the sidecar is
unreachable, a model is routed to a cluster Envoy does not have, the upstream refuses
the connection, the headers are too many. Left alone these are empty or plain-text
503s that SDKs retry. The HCM's ``local_reply_config`` rewrites each into a JSON body
in the provider's error shape (Anthropic's for ``/v1/messages``, OpenAI's otherwise),
with ``error.code`` naming the cause, and adds the header ``x-policy-sidecar-error:
<code>``: the usage filter sees it on the response and records the request as
decision ``error`` with that cause (``denied_by``).

``ENVOY_ERRORS`` is the one table: the Envoy configuration, the usage filter and
docs/envoy.md all follow it. First match wins, so the more specific causes come first.
The sidecar's own replies (details ``policy_sidecar_*``) never match: they already
carry their body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from policy_sidecar.envoy.guard import DENIED_DETAILS_PREFIX

ERROR_HEADER = "x-policy-sidecar-error"
# Envoy counts these in a request's headers on top of what the client sent: the four
# pseudo-headers, x-request-id, x-forwarded-proto, and what the sidecar adds (identity
# headers, the route). The HCM limit leaves this much room above the client's 100.
CLIENT_HEADER_LIMIT = 100
HEADER_ROOM = 28

_CEL_FILTER = "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter"
_NOT_OURS = "!response.code_details.startsWith('policy_sidecar_')"


@dataclass(frozen=True, slots=True)
class EnvoyError:
    code: str
    status: int
    message: str
    # An Envoy access-log filter (as its JSON form) that picks this cause.
    when: dict[str, Any]
    # How Envoy shows it, for docs/envoy.md.
    envoy_sign: str


def _cel(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": _CEL_FILTER,
                "expression": expression,
            },
        }
    }


def _all(*filters: dict[str, Any]) -> dict[str, Any]:
    return {"and_filter": {"filters": list(filters)}}


def _flags(*flags: str) -> dict[str, Any]:
    return {"response_flag_filter": {"flags": list(flags)}}


ENVOY_ERRORS: tuple[EnvoyError, ...] = (
    EnvoyError(
        "policy_sidecar_timeout",
        504,
        "The policy sidecar did not answer in time; the request was not sent.",
        _cel("response.code_details.startsWith('ext_proc_error') && response.code == 504"),
        "details `ext_proc_error*` with status 504 (message timeout)",
    ),
    EnvoyError(
        "policy_sidecar_unavailable",
        503,
        "The policy sidecar could not be reached; the request was not sent.",
        _cel("response.code_details.startsWith('ext_proc_error')"),
        "details `ext_proc_error_*` (gRPC error from the policy filter)",
    ),
    EnvoyError(
        "request_not_checked",
        400,
        "The policy filter could not check this request (for example, trailers with no"
        " body); it was not sent.",
        _cel(f"response.code_details.startsWith('{DENIED_DETAILS_PREFIX}')"),
        "details `rbac_access_denied*` (the `decided` filter: no policy decision)",
    ),
    EnvoyError(
        "request_header_fields_too_large",
        431,
        "The request has too many or too large headers.",
        _cel(
            "response.code_details == 'header_mutation_result_exceeds_limit'"
            f" || (response.code == 431 && {_NOT_OURS})"
        ),
        "status 431, or details `header_mutation_result_exceeds_limit`",
    ),
    EnvoyError(
        "request_too_large",
        413,
        "The request body is larger than the gateway accepts.",
        _cel(f"response.code == 413 && {_NOT_OURS}"),
        "status 413 (body over the buffer limit)",
    ),
    EnvoyError(
        "upstream_not_configured",
        503,
        "The model is routed to an upstream cluster the gateway does not have.",
        _flags("NC"),
        "flag `NC` (no cluster)",
    ),
    EnvoyError(
        "upstream_tls_error",
        # 503 like every other failure to reach the provider: nothing was sent.
        503,
        "The TLS handshake with the provider failed (its certificate could not be"
        " verified, or the connection was refused during the handshake).",
        _all(_flags("UF"), _cel("response.code_details.contains('TLS_error')")),
        "flag `UF` with `TLS_error` in the details",
    ),
    EnvoyError(
        "upstream_connect_failed",
        503,
        "The gateway could not connect to the provider.",
        _flags("UF", "UH"),
        "flag `UF` (connect failure) or `UH` (no healthy host)",
    ),
    EnvoyError(
        "upstream_overflow",
        503,
        "The gateway's connection limit to the provider is reached.",
        _flags("UO"),
        "flag `UO` (circuit breaker)",
    ),
    EnvoyError(
        "upstream_timeout",
        504,
        "The provider did not answer in time.",
        _flags("UT", "SI"),
        "flag `UT` (route timeout) or `SI` (stream idle timeout)",
    ),
    EnvoyError(
        "upstream_reset",
        503,
        "The provider closed the connection before answering.",
        _flags("UC", "UR", "URX", "LR"),
        "flags `UC`, `UR`, `URX`, `LR` (reset before the response)",
    ),
    EnvoyError(
        "gateway_error",
        0,  # keep Envoy's status
        "The gateway could not process the request.",
        _cel(_NOT_OURS),
        "any other reply Envoy makes itself",
    ),
)

# Where the client speaks Anthropic's API, the error is in Anthropic's shape.
_ANTHROPIC_PATH = {
    "header_filter": {"header": {"name": ":path", "string_match": {"prefix": "/v1/messages"}}}
}


def _error_type(status: int) -> str:
    if status == 413:
        return "request_too_large"
    if 400 <= status < 500:
        return "invalid_request_error"
    return "api_error"


def _body(error: EnvoyError, *, anthropic: bool) -> dict[str, Any]:
    kind = _error_type(error.status)
    if anthropic:
        payload: dict[str, Any] = {
            "type": "error",
            "error": {"type": kind, "message": error.message, "code": error.code},
        }
    else:
        payload = {
            "error": {"message": error.message, "type": kind, "param": None, "code": error.code}
        }
    return {"json_format": payload, "content_type": "application/json"}


def _mapper(error: EnvoyError, *, anthropic: bool) -> dict[str, Any]:
    when = error.when
    if anthropic:
        when = _all(_ANTHROPIC_PATH, when)
    mapper: dict[str, Any] = {
        "filter": when,
        "headers_to_add": [
            {
                "header": {"key": ERROR_HEADER, "value": error.code},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
        "body_format_override": _body(error, anthropic=anthropic),
    }
    if error.status:
        mapper["status_code"] = error.status
    return mapper


def local_reply_config(indent: int) -> str:
    """The HCM's ``local_reply_config`` as YAML lines indented by ``indent`` spaces,
    without the key itself: one commented mapper per cause and error shape."""
    pad = " " * indent
    lines = [f"{pad}mappers:"]
    for anthropic in (True, False):
        for error in ENVOY_ERRORS:
            shape = "Anthropic shape, /v1/messages" if anthropic else "OpenAI shape"
            lines.append(f"{pad}# {error.code} ({shape})")
            mapper = _mapper(error, anthropic=anthropic)
            for i, (key, value) in enumerate(mapper.items()):
                lead = "- " if i == 0 else "  "
                lines.append(f"{pad}{lead}{key}: {json.dumps(value)}")
    return "\n".join(lines)
