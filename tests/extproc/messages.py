"""Builders of the messages Envoy sends, for tests."""

from __future__ import annotations

import json
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from policy_sidecar.extproc.responses import METADATA_NAMESPACE


def headers(pairs: dict[str, str], *, end_of_stream: bool = False) -> pb.HttpHeaders:
    return pb.HttpHeaders(
        headers=base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
        ),
        end_of_stream=end_of_stream,
    )


def request_headers(
    key: str | None,
    *,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    body: bytes | None = b"{}",
    extra: dict[str, str] | None = None,
) -> pb.HttpHeaders:
    pairs = {":method": method, ":path": path, ":authority": "llm", "x-request-id": "rid-1"}
    if key is not None:
        pairs["authorization"] = f"Bearer {key}"
    if body is not None:
        pairs["content-length"] = str(len(body))
    pairs.update(extra or {})
    return headers(pairs, end_of_stream=body is None)


def chat_body(model: str = "gpt-4o-mini", **extra: Any) -> bytes:
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hello there"}], **extra}
    ).encode()


def body(data: bytes, *, end_of_stream: bool = True) -> pb.HttpBody:
    return pb.HttpBody(body=data, end_of_stream=end_of_stream)


def with_metadata(msg: pb.ProcessingRequest, values: dict[str, Any]) -> pb.ProcessingRequest:
    ns = struct_pb2.Struct()
    ns.update(values)
    msg.metadata_context.filter_metadata[METADATA_NAMESPACE].CopyFrom(ns)
    return msg


def header_dict(mutation: pb.HeaderMutation) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in mutation.set_headers}
