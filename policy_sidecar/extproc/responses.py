"""Small pure builders of ext_proc responses. Header values always go in ``raw_value``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

METADATA_NAMESPACE = "policy_sidecar"


def header_mutation(
    set_headers: Mapping[str, str] | None = None, remove: Iterable[str] = ()
) -> pb.HeaderMutation:
    # append/append_action left unset: Envoy then overwrites an existing header.
    return pb.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, raw_value=v.encode()))
            for k, v in (set_headers or {}).items()
        ],
        remove_headers=list(remove),
    )


def to_struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    """A flat Struct, built field by field (``Struct.update`` recurses in Python)."""
    out = struct_pb2.Struct()
    _fill(out, values)
    return out


def _fill(out: struct_pb2.Struct, values: Mapping[str, Any]) -> None:
    fields = out.fields
    for key, value in values.items():
        if isinstance(value, bool):
            fields[key].bool_value = value
        elif isinstance(value, str):
            fields[key].string_value = value
        elif isinstance(value, int | float):
            fields[key].number_value = value
        else:
            fields[key].list_value.extend(value)


def _set_metadata(response: pb.ProcessingResponse, values: Mapping[str, Any] | None) -> None:
    """The namespace's values, written in place (no intermediate Struct to copy)."""
    if values:
        _fill(response.dynamic_metadata.fields[METADATA_NAMESPACE].struct_value, values)


def _fill_common(
    common: pb.CommonResponse,
    mutation: pb.HeaderMutation | None,
    body: bytes | None,
    clear_route_cache: bool,
) -> None:
    """Fills the response's CommonResponse in place (a constructor would copy it)."""
    common.SetInParent()
    if mutation is not None:
        common.header_mutation.CopyFrom(mutation)
    if body is not None:
        common.status = pb.CommonResponse.CONTINUE_AND_REPLACE
        common.body_mutation.body = body
    if clear_route_cache:
        common.clear_route_cache = True


def continue_request_body(
    *,
    mutation: pb.HeaderMutation | None = None,
    body: bytes | None = None,
    metadata: Mapping[str, Any] | None = None,
    clear_route_cache: bool = False,
) -> pb.ProcessingResponse:
    """Let a buffered request body go upstream, optionally replaced; with
    ``clear_route_cache`` Envoy picks the route again (after a routing header)."""
    response = pb.ProcessingResponse()
    _fill_common(response.request_body.response, mutation, body, clear_route_cache)
    _set_metadata(response, metadata)
    return response


def continue_request_headers(
    *,
    mutation: pb.HeaderMutation | None = None,
    metadata: Mapping[str, Any] | None = None,
    clear_route_cache: bool = False,
) -> pb.ProcessingResponse:
    response = pb.ProcessingResponse()
    _fill_common(response.request_headers.response, mutation, None, clear_route_cache)
    _set_metadata(response, metadata)
    return response


def immediate_response(
    *,
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    details: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> pb.ProcessingResponse:
    """Answer the client now; the request never goes upstream."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    response = pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=header_mutation(all_headers),
            body=body,
            details=details,
        )
    )
    _set_metadata(response, metadata)
    return response
