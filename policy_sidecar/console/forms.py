"""Reading form posts and mapping the admin API's field violations onto form fields."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

__all__ = ["FormErrors", "field_errors", "form_data", "integer", "text"]

FormErrors = dict[str, str]


async def form_data(request: web.Request) -> MultiDictProxy[str]:
    data = await request.post()
    return MultiDictProxy(MultiDict((k, v) for k, v in data.items() if isinstance(v, str)))


def text(form: Mapping[str, str], name: str) -> str:
    return form.get(name, "").strip()


def integer(form: Mapping[str, str], name: str) -> int:
    """A whole number from the form; 0 when empty or not a number (the API then says why)."""
    value = text(form, name)
    try:
        return int(value)
    except ValueError:
        return 0


def field_errors(violations: Mapping[str, str], *prefixes: str) -> FormErrors:
    """`{"application.name": "required"}` -> `{"name": "required"}`; a violation that
    names no form field goes under `_form` (shown above the form)."""
    out: FormErrors = {}
    for path, message in violations.items():
        name = path
        for prefix in prefixes:
            if path.startswith(prefix):
                name = path[len(prefix) :]
                break
        key = name if name else "_form"
        out[key] = f"{out[key]}; {message}" if key in out else message
    return out
