"""Every string field of every admin RPC is checked at the edge: a NUL character or an
over-long value is INVALID_ARGUMENT naming the field, never INTERNAL, never a row dump."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from policy_sidecar.admin.strings import MAX_LENGTHS, check_strings
from policy_sidecar.admin.v1 import (
    api_keys_pb2,
    applications_pb2,
    configs_pb2,
    models_pb2,
    policies_pb2,
    usage_pb2,
)

from .conftest import Client
from .helpers import AUTH, fails, field_violations

_FILES = (api_keys_pb2, applications_pb2, configs_pb2, models_pb2, policies_pb2, usage_pb2)
_OPAQUE = ("google.protobuf.Timestamp", "google.protobuf.Struct")


def _string_paths(message: Descriptor, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """Paths (as field-name tuples) to every string field a request can carry."""
    for field in message.fields:
        path = (*prefix.split(".")[:-1], field.name) if prefix else (field.name,)
        if field.type == FieldDescriptor.TYPE_STRING:
            yield path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                yield (*path, "<map>")
            elif field.message_type.full_name == "google.protobuf.Struct":
                yield (*path, "<struct>")
            elif field.message_type.full_name not in _OPAQUE:
                yield from _string_paths(field.message_type, ".".join(path) + ".")


def _cases() -> Iterator[Any]:
    for module in _FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                for path in _string_paths(method.input_type):
                    yield pytest.param(method, path, id=f"{method.name}:{'.'.join(path)}")


def _request_with_nul(method: MethodDescriptor, path: tuple[str, ...]) -> tuple[Any, str]:
    """The request with NUL in the field at `path`, and the field path expected back."""
    request = message_factory.GetMessageClass(method.input_type)()
    target = request
    for name in path[:-2] if path[-1] in ("<map>", "<struct>") else path[:-1]:
        target = getattr(target, name)
    if path[-1] == "<map>":
        getattr(target, path[-2])["team"] = "a\x00b"
        return request, ".".join((*path[:-2], path[-2], "team"))
    if path[-1] == "<struct>":
        getattr(target, path[-2]).update({"models": ["ok", "a\x00b"]})
        return request, ".".join((*path[:-2], path[-2], "models")) + "[1]"
    field = target.DESCRIPTOR.fields_by_name[path[-1]]
    if field.is_repeated:
        getattr(target, path[-1]).append("a\x00b")
        return request, ".".join(path) + "[0]"
    setattr(target, path[-1], "a\x00b")
    return request, ".".join(path)


CASES = list(_cases())


def test_every_rpc_with_a_string_is_covered() -> None:
    # The table is built from the protos: a new string field is covered automatically.
    names = {case.values[0].name for case in CASES}
    assert {"CreateApplication", "UpdateModel", "UpsertApplicationConfig"} <= names
    assert {"CreatePolicy", "CreateApiKey", "RevokeApiKey", "ValidatePolicy"} <= names
    assert len(CASES) > 60


@pytest.mark.postgres
async def test_nul_in_any_string_field_is_invalid_argument_naming_it(client: Client) -> None:
    # One server for the whole table (the check runs before any servicer); every case
    # that answers otherwise is listed at once.
    wrong: dict[str, object] = {}
    for case in CASES:
        method, path = case.values
        request, field = _request_with_nul(method, path)
        call = client.channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
        )
        try:
            await call(request, metadata=AUTH)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                wrong[case.id] = (exc.code(), exc.details())
            elif field_violations(exc) != {field: "must not contain a NUL character"}:
                wrong[case.id] = field_violations(exc)
        else:
            wrong[case.id] = "succeeded"
    assert wrong == {}


@pytest.mark.postgres
async def test_over_long_name_names_the_field_and_echoes_no_row(client: Client) -> None:
    name = "n" * (MAX_LENGTHS["name"] + 1)
    exc = await fails(
        client.apps.CreateApplication(
            applications_pb2.CreateApplicationRequest(
                application=applications_pb2.Application(
                    org_id="org-secret-1", name=name, description="desc-secret-2"
                )
            ),
            metadata=AUTH,
        )
    )
    assert field_violations(exc) == {"application.name": "at most 200 characters (got 201)"}
    details = exc.details() or ""
    for leaked in (name, "org-secret-1", "desc-secret-2", "Failing row"):
        assert leaked not in details


@pytest.mark.parametrize(
    ("request_", "violations"),
    [
        (
            applications_pb2.CreateApplicationRequest(
                application=applications_pb2.Application(labels={"k" * 64: "v", "ok": "v" * 257})
            ),
            {
                "application.labels": "a key: at most 63 characters (got 64)",
                "application.labels.ok": "at most 256 characters (got 257)",
            },
        ),
        (
            models_pb2.CreateModelRequest(model=models_pb2.Model(provider="p" * 257)),
            {"model.provider": "at most 256 characters (got 257)"},
        ),
        (
            policies_pb2.ValidatePolicyRequest(
                expression=policies_pb2.CelExpression(source="1 + 1" * 2000)
            ),
            {},
        ),
    ],
)
def test_length_limits(request_: Any, violations: dict[str, str]) -> None:
    from policy_sidecar.admin.errors import InvalidArgument

    found: dict[str, str] = {}
    try:
        check_strings(request_)
    except InvalidArgument as exc:
        found = {v.field: v.description for v in exc.violations}
    assert found == violations


def test_nested_struct_paths() -> None:
    from policy_sidecar.admin.errors import InvalidArgument

    config = struct_pb2.Struct()
    config.update({"a": {"b": [1, {"c": "x\x00"}]}, "k\x00": 1})
    with pytest.raises(InvalidArgument) as info:
        check_strings(policies_pb2.CreatePolicyRequest(policy=policies_pb2.Policy(config=config)))
    assert {v.field: v.description for v in info.value.violations} == {
        "policy.config.a.b[1].c": "must not contain a NUL character",
        "policy.config": "a key: must not contain a NUL character",
    }
