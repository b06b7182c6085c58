from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from policy_sidecar.admin.v1 import models_pb2 as pb

from .conftest import Client
from .helpers import AUTH, READ, fails, field_violations

pytestmark = pytest.mark.postgres

MINI = pb.Model(
    name="gpt-4o-mini",
    provider="openai",
    upstream_model="gpt-4o-mini-2024-07-18",
    upstream_cluster="openai",
    context_window=128000,
    input_price_per_mtok="0.15",
    output_price_per_mtok="0.60",
    enabled=True,
)


async def test_crud(client: Client, publisher) -> None:
    created = (
        await client.models.CreateModel(pb.CreateModelRequest(model=MINI), metadata=AUTH)
    ).model
    assert created.id.startswith("mdl_")
    assert (created.input_price_per_mtok, created.output_price_per_mtok) == ("0.15", "0.6")
    # Never set: unpriced ("" on the wire, NULL in the table; cached falls back to input).
    assert created.cached_input_price_per_mtok == ""
    by_name = await client.models.GetModel(pb.GetModelRequest(id="gpt-4o-mini"), metadata=READ)
    by_id = await client.models.GetModel(pb.GetModelRequest(id=created.id), metadata=READ)
    assert by_name.model == by_id.model == created
    updated = (
        await client.models.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(id=created.id, version=1, enabled=False, provider="nope"),
                update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
            ),
            metadata=AUTH,
        )
    ).model
    assert (updated.enabled, updated.provider, updated.version) == (False, "openai", 2)
    listed = await client.models.ListModels(pb.ListModelsRequest(provider="openai"), metadata=READ)
    assert [m.id for m in listed.models] == [created.id]
    stale = await fails(
        client.models.DeleteModel(pb.DeleteModelRequest(id=created.id, version=1), metadata=AUTH)
    )
    assert stale.code() == grpc.StatusCode.ABORTED
    await client.models.DeleteModel(pb.DeleteModelRequest(id=created.id, version=2), metadata=AUTH)
    gone = await fails(client.models.GetModel(pb.GetModelRequest(id=created.id), metadata=READ))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    assert [c.action for c in publisher.changes] == ["created", "updated", "deleted"]


def _model(**changes: object) -> pb.Model:
    m = pb.Model()
    m.CopyFrom(MINI)
    for k, v in changes.items():
        setattr(m, k, v)
    return m


@pytest.mark.parametrize(
    ("model", "violations"),
    [
        (_model(name=""), {"model.name": "required"}),
        (_model(provider="openia"), {"model.provider"}),
        (_model(input_price_per_mtok="cheap"), {"model.input_price_per_mtok"}),
        (_model(output_price_per_mtok="-1"), {"model.output_price_per_mtok"}),
        (_model(context_window=-5), {"model.context_window"}),
        (_model(api_version="2024-10-21"), {"model.api_version"}),  # not an azure model
        (
            _model(provider="azure", azure_deployment="a/b", api_version="x&y=1"),
            {"model.azure_deployment", "model.api_version"},
        ),
        (
            pb.Model(),
            {"model.name", "model.provider", "model.upstream_model", "model.upstream_cluster"},
        ),
    ],
)
async def test_create_violations(client: Client, model: pb.Model, violations: object) -> None:
    exc = await fails(client.models.CreateModel(pb.CreateModelRequest(model=model), metadata=AUTH))
    found = field_violations(exc)
    assert (found if isinstance(violations, dict) else set(found)) == violations


async def test_duplicate_name(client: Client) -> None:
    await client.models.CreateModel(pb.CreateModelRequest(model=MINI), metadata=AUTH)
    exc = await fails(client.models.CreateModel(pb.CreateModelRequest(model=MINI), metadata=AUTH))
    assert exc.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_an_empty_price_is_unpriced_and_zero_is_free(client: Client) -> None:
    unpriced = _model(name="unpriced", input_price_per_mtok="", output_price_per_mtok="")
    free = _model(name="free", input_price_per_mtok="0", output_price_per_mtok="0")
    a = await client.models.CreateModel(pb.CreateModelRequest(model=unpriced), metadata=AUTH)
    b = await client.models.CreateModel(pb.CreateModelRequest(model=free), metadata=AUTH)
    assert (a.model.input_price_per_mtok, a.model.output_price_per_mtok) == ("", "")
    assert (b.model.input_price_per_mtok, b.model.output_price_per_mtok) == ("0", "0")


async def test_an_azure_deployment_name_and_api_version_round_trip(client: Client) -> None:
    azure = _model(
        name="gpt-4o-eu", provider="azure", azure_deployment="gpt4o-eu", api_version="2024-10-21"
    )
    created = (
        await client.models.CreateModel(pb.CreateModelRequest(model=azure), metadata=AUTH)
    ).model
    assert (created.azure_deployment, created.api_version) == ("gpt4o-eu", "2024-10-21")
    # An update naming only the version is checked against the stored provider.
    bad = await fails(
        client.models.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(id=created.id, version=1, api_version="2024&x"),
                update_mask=field_mask_pb2.FieldMask(paths=["api_version"]),
            ),
            metadata=AUTH,
        )
    )
    assert set(field_violations(bad)) == {"model.api_version"}
    cleared = (
        await client.models.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(id=created.id, version=1),
                update_mask=field_mask_pb2.FieldMask(paths=["api_version"]),
            ),
            metadata=AUTH,
        )
    ).model
    assert (cleared.azure_deployment, cleared.api_version) == ("gpt4o-eu", "")
    mini = (await client.models.CreateModel(pb.CreateModelRequest(model=MINI), metadata=AUTH)).model
    refused = await fails(
        client.models.UpdateModel(
            pb.UpdateModelRequest(
                model=pb.Model(id=mini.id, version=1, api_version="2024-10-21"),
                update_mask=field_mask_pb2.FieldMask(paths=["api_version"]),
            ),
            metadata=AUTH,
        )
    )
    assert set(field_violations(refused)) == {"model.api_version"}
