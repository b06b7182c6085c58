"""Request bodies from bytes to a JSON object, within the limits every parser relies on.

Everything downstream (the parsers, the tokenizer, re-serialising a patched body, the
metadata handed to the usage filter) may then assume: nesting no deeper than
``MAX_NESTING_DEPTH``, every number finite. Failures are ``RequestError`` (a 400).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from policy_sidecar.providers._multipart import is_form, parse_form, replace_field
from policy_sidecar.providers._openai_media import FORM_OPERATIONS
from policy_sidecar.providers.base import RequestError, Route

# Deep enough for any real request (a tool's JSON schema ten levels deep sits about 25
# levels down), far below Python's recursion limit, which json and every walker share.
MAX_NESTING_DEPTH = 128


_CONTAINERS = (dict, list)
_CONTAINER_TYPES = frozenset(_CONTAINERS)


def _too_deep(body: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` deep; iterative, level by level.

    json only builds exact dicts and lists. A container holding only scalars (a token-id
    array, a list of strings) is passed over by a C-speed type scan.
    """
    level: list[Any] = [body]
    for _ in range(limit):
        below: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node
            if not _CONTAINER_TYPES.isdisjoint(map(type, values)):
                below += [v for v in values if type(v) in _CONTAINERS]
        if not below:
            return False
        level = below
    return True


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 24 else text[:20] + "…"
        raise RequestError(f"the number {shown} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise RequestError(f"{name} is not a JSON value")


def _nested_too_deeply() -> RequestError:
    return RequestError(f"the JSON nests deeper than {MAX_NESTING_DEPTH} levels")


def load_body(data: bytes) -> dict[str, Any]:
    """The body as a JSON object; ``RequestError`` for anything a parser must not see.

    Invalid JSON raises ``json.JSONDecodeError`` or ``UnicodeDecodeError``: all of them
    are ``ValueError``.
    """
    try:
        body = json.loads(data, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:  # far deeper than the limit: the C parser gave up first
        raise _nested_too_deeply() from None
    except ValueError as exc:
        # An integer longer than Python's int conversion limit (4300 digits): say so
        # plainly rather than echo the interpreter's advice about sys settings.
        if "integer string conversion" in str(exc):
            raise RequestError("a number in the body has too many digits") from None
        raise
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    # Counting opening brackets (in any encoding) bounds the depth: most bodies stop here.
    if data.count(b"[") + data.count(b"{") > MAX_NESTING_DEPTH and _too_deep(
        body, MAX_NESTING_DEPTH
    ):
        raise _nested_too_deeply()
    return body


def load_request(route: Route, data: bytes, content_type: str | None) -> dict[str, Any]:
    """The body of a request to ``route``: a form for the upload routes (image edits,
    audio transcriptions and translations: ``multipart/form-data`` only, as the
    provider takes them), a JSON object (`load_body`) for every other route."""
    if route.operation in FORM_OPERATIONS:
        if not is_form(content_type):
            raise RequestError("this endpoint takes a multipart/form-data body")
        return parse_form(data, content_type)
    return load_body(data)


def patched_body(
    data: bytes, content_type: str | None, body: Mapping[str, Any], patch: Mapping[str, Any]
) -> bytes | None:
    """The body to send upstream with ``patch`` merged in, or None when nothing changes.

    A JSON body is re-serialised; a form (an upload) keeps every byte but the patched
    text fields (a deployment's ``model``), so a 25 MB file is never re-encoded."""
    if not patch:
        return None
    if is_form(content_type):
        for name, value in patch.items():
            data = replace_field(data, content_type, name, str(value))
        return data
    return json.dumps({**body, **patch}).encode()
