"""Reads the request attributes Envoy sends: as attributes (fast path) or as headers.

Not `extproc.facts.RequestFacts`, which is what the sidecar learns of a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ATTRIBUTES_KEY = "envoy.filters.http.ext_proc"


@dataclass(frozen=True, slots=True)
class EnvoyRequestAttributes:
    method: str
    path: str
    request_id: str
    headers: dict[str, str]


def attributes_from_request(attributes: Any) -> EnvoyRequestAttributes | None:
    """From ``ProcessingRequest.attributes`` (request.headers/method/path/id)."""
    attrs = attributes.get(ATTRIBUTES_KEY)
    if attrs is None:
        return None
    fields = attrs.fields
    headers_value = fields.get("request.headers")
    headers: dict[str, str] = {}
    if headers_value is not None:
        for key, value in headers_value.struct_value.fields.items():
            headers[key.lower()] = value.string_value
    method = fields["request.method"].string_value if "request.method" in fields else ""
    path = fields["request.path"].string_value if "request.path" in fields else ""
    rid = fields["request.id"].string_value if "request.id" in fields else ""
    return EnvoyRequestAttributes(method=method, path=path, request_id=rid, headers=headers)


def attributes_from_headers(header_map: Any, attributes: Any) -> EnvoyRequestAttributes:
    """From a ``request_headers`` message (the headers-first route)."""
    headers = {h.key: h.raw_value.decode("latin-1") for h in header_map.headers}
    from_attrs = attributes_from_request(attributes)
    return EnvoyRequestAttributes(
        method=headers.get(":method", ""),
        path=headers.get(":path", ""),
        request_id=headers.get("x-request-id", from_attrs.request_id if from_attrs else ""),
        headers=headers,
    )
