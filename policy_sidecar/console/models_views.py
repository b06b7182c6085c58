"""Screen 2: model deployments (provider, upstream, account/credential reference, prices)."""

from __future__ import annotations

from aiohttp import web
from google.protobuf import field_mask_pb2

from policy_sidecar.admin.v1 import models_pb2
from policy_sidecar.console.admin_client import ApiError
from policy_sidecar.console.forms import FormErrors, field_errors, form_data, integer, text
from policy_sidecar.console.render import render
from policy_sidecar.console.state import CLIENT_KEY, current_user
from policy_sidecar.providers.registry import default_registry

__all__ = ["add_routes"]

TEXT_FIELDS = (
    "name",
    "provider",
    "upstream_model",
    "upstream_cluster",
    "account",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cached_input_price_per_mtok",
)
MUTABLE = (*TEXT_FIELDS, "context_window", "enabled")


def _providers() -> list[str]:
    return sorted(default_registry().names)


def _model_from(form: dict[str, str], model_id: str = "", version: int = 0) -> models_pb2.Model:
    model = models_pb2.Model(
        id=model_id,
        version=version,
        enabled=form.get("enabled") == "on",
        context_window=integer(form, "context_window"),
    )
    for name in TEXT_FIELDS:
        setattr(model, name, text(form, name))
    return model


def _form_of(model: models_pb2.Model) -> dict[str, str]:
    values = {name: getattr(model, name) for name in TEXT_FIELDS}
    values["context_window"] = str(model.context_window or "")
    values["enabled"] = "on" if model.enabled else ""
    values["version"] = str(model.version)
    return values


async def _page(
    request: web.Request,
    *,
    form: dict[str, str] | None = None,
    errors: FormErrors | None = None,
    editing: models_pb2.Model | None = None,
) -> web.Response:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    models = await client.call(
        client.models.ListModels, models_pb2.ListModelsRequest(page_size=500), user.token
    )
    return render(
        request,
        "models.html",
        status=400 if errors else 200,
        models=sorted(models.models, key=lambda m: m.name),
        providers=_providers(),
        form=form or {"enabled": "on", "provider": "openai"},
        errors=errors or {},
        editing=editing,
    )


async def list_models(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def create_model(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    form = dict(await form_data(request))
    try:
        await client.call(
            client.models.CreateModel,
            models_pb2.CreateModelRequest(model=_model_from(form)),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields:
            raise
        return await _page(request, form=form, errors=field_errors(exc.fields, "model."))
    raise web.HTTPSeeOther("/models")


async def _get(request: web.Request) -> models_pb2.Model:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    got: models_pb2.GetModelResponse = await client.call(
        client.models.GetModel,
        models_pb2.GetModelRequest(id=request.match_info["model_id"]),
        user.token,
    )
    return got.model


async def edit_model(request: web.Request) -> web.StreamResponse:
    model = await _get(request)
    return await _page(request, form=_form_of(model), editing=model)


async def update_model(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    form = dict(await form_data(request))
    model_id = request.match_info["model_id"]
    paths = list(MUTABLE) if form.get("_action") != "toggle" else ["enabled"]
    try:
        await client.call(
            client.models.UpdateModel,
            models_pb2.UpdateModelRequest(
                model=_model_from(form, model_id, integer(form, "version")),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields:
            raise
        model = await _get(request)
        return await _page(
            request, form=form, errors=field_errors(exc.fields, "model."), editing=model
        )
    raise web.HTTPSeeOther("/models")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/models", list_models)
    router.add_post("/models", create_model)
    router.add_get("/models/{model_id}", edit_model)
    router.add_post("/models/{model_id}", update_model)
