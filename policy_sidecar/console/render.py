"""Jinja2 templates (autoescaped) and the filters the pages use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web
from google.protobuf import timestamp_pb2

from policy_sidecar.console.state import CURRENT_USER

__all__ = ["create_environment", "render"]

ENV_KEY = web.AppKey("jinja", jinja2.Environment)


def _when(ts: timestamp_pb2.Timestamp | None) -> str:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(ts: timestamp_pb2.Timestamp | None) -> str:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return datetime.fromtimestamp(ts.seconds, UTC).strftime("%H:%M:%S")


def _is_set(ts: timestamp_pb2.Timestamp | None) -> bool:
    return ts is not None and (ts.seconds != 0 or ts.nanos != 0)


def _number(value: int | float) -> str:
    return f"{value:,}"


def _amount(text: str) -> str:
    """A decimal string with thousands separators, its fraction kept as written."""
    whole, dot, fraction = (text or "0").partition(".")
    sign = "-" if whole.startswith("-") else ""
    digits = whole.removeprefix("-")
    grouped = f"{int(digits):,}" if digits.isdigit() else digits
    return f"{sign}{grouped}{dot}{fraction}"


def _scope(policy: Any) -> list[tuple[str, str]]:
    """The scope fields a policy sets (unset ones match everyone)."""
    names = ("org_id", "app_id", "environment", "model_pattern")
    return [(n, getattr(policy, n)) for n in names if policy.HasField(n)]


def create_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("policy_sidecar.console", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["number"] = _number
    env.filters["clock"] = _clock
    env.filters["amount"] = _amount
    env.filters["scope"] = _scope
    env.tests["set_time"] = _is_set
    return env


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    env = request.app[ENV_KEY]
    page = env.get_template(template).render(user=CURRENT_USER.get(), path=request.path, **context)
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")
