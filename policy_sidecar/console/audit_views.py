"""Screen 5: the audit log (ListAuditEvents), readable by read-only tokens too."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from policy_sidecar.admin.v1 import audit_pb2
from policy_sidecar.console.admin_client import ApiError
from policy_sidecar.console.forms import field_errors
from policy_sidecar.console.render import render
from policy_sidecar.console.state import CLIENT_KEY, current_user

__all__ = ["Change", "add_routes", "changes"]

OBJECT_TYPES = ("application", "application_config", "api_key", "model", "policy",
                "provider_account", "fallback_group")  # fmt: skip
PAGE_SIZE = 50
LINKS = {
    "application": "/apps/{id}",
    "model": "/models/{id}",
    "policy": "/policies/{id}",
    "application_config": "/apps/{app}",
}


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    before: str
    after: str


def _row(text: str) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _show(value: Any) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True)


def changes(event: audit_pb2.AuditEvent) -> list[Change]:
    """The fields that differ between before and after (every field for a create or
    delete), in name order."""
    before, after = _row(event.before_json), _row(event.after_json)
    names = sorted(set(before) | set(after))
    return [
        Change(n, _show(before.get(n)), _show(after.get(n)))
        for n in names
        if before.get(n) != after.get(n) or not (before and after)
    ]


def link(event: audit_pb2.AuditEvent) -> str:
    template = LINKS.get(event.object_type)
    if template is None or event.action == "delete":
        return ""
    return template.format(id=event.object_id, app=event.object_id.partition("/")[0])


async def audit_log(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    client = request.app[CLIENT_KEY]
    object_type = request.query.get("object_type", "")
    object_id = request.query.get("object_id", "").strip()
    page_token = request.query.get("page_token", "")
    errors: dict[str, str] = {}
    events: list[audit_pb2.AuditEvent] = []
    next_token = ""
    try:
        found: audit_pb2.ListAuditEventsResponse = await client.call(
            client.audit.ListAuditEvents,
            audit_pb2.ListAuditEventsRequest(
                object_type=object_type,
                object_id=object_id,
                page_size=PAGE_SIZE,
                page_token=page_token,
            ),
            user.token,
        )
        events, next_token = list(found.events), found.next_page_token
    except ApiError as exc:
        if not exc.fields:
            raise
        errors = field_errors(exc.fields)
    return render(
        request,
        "audit.html",
        status=400 if errors else 200,
        events=[(e, changes(e), link(e)) for e in events],
        object_types=OBJECT_TYPES,
        object_type=object_type,
        object_id=object_id,
        next_token=next_token,
        errors=errors,
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/audit", audit_log)
