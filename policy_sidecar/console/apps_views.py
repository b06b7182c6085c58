"""Screen 1: applications, their per-environment configs and their API keys."""

from __future__ import annotations

from aiohttp import web
from google.protobuf import field_mask_pb2

from policy_sidecar.admin.v1 import api_keys_pb2, applications_pb2, configs_pb2
from policy_sidecar.console.admin_client import AdminClient, ApiError
from policy_sidecar.console.forms import FormErrors, field_errors, form_data, integer, text
from policy_sidecar.console.render import render
from policy_sidecar.console.state import CLIENT_KEY, current_user

__all__ = ["add_routes"]

PAGE = 500


async def _all_apps(
    client: AdminClient, token: str, archived: bool
) -> list[applications_pb2.Application]:
    apps: list[applications_pb2.Application] = []
    page_token = ""
    while True:
        page = await client.call(
            client.apps.ListApplications,
            applications_pb2.ListApplicationsRequest(
                include_archived=archived, page_size=PAGE, page_token=page_token
            ),
            token,
        )
        apps.extend(page.applications)
        page_token = page.next_page_token
        if not page_token:
            return apps


def _matches(app: applications_pb2.Application, query: str) -> bool:
    q = query.lower()
    return any(q in s.lower() for s in (app.id, app.name, app.description, app.org_id))


async def _list_page(
    request: web.Request, *, form: dict[str, str] | None = None, errors: FormErrors | None = None
) -> web.Response:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    query = request.query.get("q", "").strip()
    archived = request.query.get("archived") == "1"
    apps = [a for a in await _all_apps(client, user.token, archived) if _matches(a, query)]
    return render(
        request,
        "apps.html",
        status=400 if errors else 200,
        apps=apps,
        query=query,
        archived=archived,
        form=form or {"org_id": "default"},
        errors=errors or {},
    )


async def list_apps(request: web.Request) -> web.StreamResponse:
    return await _list_page(request)


async def create_app(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    form = await form_data(request)
    values = {k: text(form, k) for k in ("org_id", "name", "description")}
    try:
        created = await client.call(
            client.apps.CreateApplication,
            applications_pb2.CreateApplicationRequest(
                application=applications_pb2.Application(
                    org_id=values["org_id"], name=values["name"], description=values["description"]
                )
            ),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields:
            raise
        return await _list_page(
            request, form=values, errors=field_errors(exc.fields, "application.")
        )
    raise web.HTTPSeeOther(f"/apps/{created.application.id}")


async def _detail_page(
    request: web.Request,
    *,
    errors: FormErrors | None = None,
    section: str = "",
    new_key: api_keys_pb2.CreateApiKeyResponse | None = None,
    status: int = 200,
) -> web.Response:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    app_id = request.match_info["app_id"]
    app = (
        await client.call(
            client.apps.GetApplication,
            applications_pb2.GetApplicationRequest(id=app_id),
            user.token,
        )
    ).application
    configs = await client.call(
        client.configs.ListApplicationConfigs,
        configs_pb2.ListApplicationConfigsRequest(app_id=app_id, page_size=PAGE),
        user.token,
    )
    keys = await client.call(
        client.keys.ListApiKeys,
        api_keys_pb2.ListApiKeysRequest(app_id=app_id, include_revoked=True, page_size=PAGE),
        user.token,
    )
    return render(
        request,
        "app.html",
        status=status,
        app=app,
        configs=configs.configs,
        keys=sorted(keys.api_keys, key=lambda k: k.prefix),
        errors=errors or {},
        section=section,
        new_key=new_key,
    )


async def show_app(request: web.Request) -> web.StreamResponse:
    return await _detail_page(request)


async def update_app(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    app_id = request.match_info["app_id"]
    form = await form_data(request)
    try:
        await client.call(
            client.apps.UpdateApplication,
            applications_pb2.UpdateApplicationRequest(
                application=applications_pb2.Application(
                    id=app_id,
                    name=text(form, "name"),
                    description=text(form, "description"),
                    version=integer(form, "version"),
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["name", "description"]),
            ),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields and exc.code.name not in ("ABORTED",):
            raise
        errors = field_errors(exc.fields, "application.") or {"_form": exc.message}
        return await _detail_page(request, errors=errors, section="edit", status=400)
    raise web.HTTPSeeOther(f"/apps/{app_id}")


async def archive_app(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    app_id = request.match_info["app_id"]
    form = await form_data(request)
    await client.call(
        client.apps.ArchiveApplication,
        applications_pb2.ArchiveApplicationRequest(id=app_id, version=integer(form, "version")),
        user.token,
    )
    raise web.HTTPSeeOther(f"/apps/{app_id}")


async def upsert_config(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    app_id = request.match_info["app_id"]
    form = await form_data(request)
    environment = text(form, "environment")
    existing: configs_pb2.ListApplicationConfigsResponse = await client.call(
        client.configs.ListApplicationConfigs,
        configs_pb2.ListApplicationConfigsRequest(app_id=app_id, page_size=PAGE),
        user.token,
    )
    # Saving an environment that exists updates it (at its current version).
    version = next((c.version for c in existing.configs if c.environment == environment), 0)
    config = configs_pb2.ApplicationConfig(
        app_id=app_id,
        environment=environment,
        enabled=form.get("enabled") == "on",
        default_model=text(form, "default_model"),
        version=version,
    )
    try:
        await client.call(
            client.configs.UpsertApplicationConfig,
            configs_pb2.UpsertApplicationConfigRequest(
                config=config,
                update_mask=field_mask_pb2.FieldMask(paths=["enabled", "default_model"]),
            ),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields:
            raise
        errors = {f"config_{k}": v for k, v in field_errors(exc.fields, "config.").items()}
        return await _detail_page(request, errors=errors, section="configs", status=400)
    raise web.HTTPSeeOther(f"/apps/{app_id}#configs")


async def create_key(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    app_id = request.match_info["app_id"]
    form = await form_data(request)
    try:
        created = await client.call(
            client.keys.CreateApiKey,
            api_keys_pb2.CreateApiKeyRequest(
                app_id=app_id, environment=text(form, "environment"), name=text(form, "name")
            ),
            user.token,
        )
    except ApiError as exc:
        if not exc.fields:
            raise
        errors = {f"key_{k}": v for k, v in field_errors(exc.fields).items()}
        return await _detail_page(request, errors=errors, section="keys", status=400)
    # The secret exists only in this response: shown once, never stored by the console.
    return await _detail_page(request, new_key=created, section="keys")


async def revoke_key(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    app_id = request.match_info["app_id"]
    form = await form_data(request)
    await client.call(
        client.keys.RevokeApiKey,
        api_keys_pb2.RevokeApiKeyRequest(
            id=request.match_info["key_id"], version=integer(form, "version")
        ),
        user.token,
    )
    raise web.HTTPSeeOther(f"/apps/{app_id}#keys")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/apps", list_apps)
    router.add_post("/apps", create_app)
    router.add_get("/apps/{app_id}", show_app)
    router.add_post("/apps/{app_id}", update_app)
    router.add_post("/apps/{app_id}/archive", archive_app)
    router.add_post("/apps/{app_id}/configs", upsert_config)
    router.add_post("/apps/{app_id}/keys", create_key)
    router.add_post("/apps/{app_id}/keys/{key_id}/revoke", revoke_key)
