"""Request bodies from bytes: the nesting limit at its exact edge, numbers out of range,
non-JSON constants, the form routes, and the patched body (found by mutation testing,
docs/testing.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policy_sidecar.providers import (
    MAX_NESTING_DEPTH,
    RequestError,
    Route,
    load_body,
    load_request,
    patched_body,
)
from policy_sidecar.providers._body import _too_deep
from policy_sidecar.providers._multipart import UploadedFile


def arrays(depth: int) -> bytes:
    """An object whose ``a`` holds ``depth`` nested arrays: ``depth + 1`` levels."""
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


def error(data: bytes) -> str:
    with pytest.raises(RequestError) as caught:
        load_body(data)
    return str(caught.value)


def test_exactly_the_nesting_limit_is_read_one_level_more_is_refused() -> None:
    assert load_body(arrays(MAX_NESTING_DEPTH - 1))["a"] is not None
    assert error(arrays(MAX_NESTING_DEPTH)) == "the JSON nests deeper than 128 levels"
    # In objects too, and past where the C parser gives up (a RecursionError).
    deep = b'{"a":' * (MAX_NESTING_DEPTH + 1) + b"1" + b"}" * (MAX_NESTING_DEPTH + 1)
    assert error(deep) == "the JSON nests deeper than 128 levels"
    assert error(b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}") == (
        "the JSON nests deeper than 128 levels"
    )


def test_many_brackets_side_by_side_or_in_strings_are_not_depth() -> None:
    wide = {"a": [[] for _ in range(300)], "b": "[{" * 300, "c": [{"d": [1, "x"]}] * 50}
    assert load_body(json.dumps(wide).encode()) == wide


@pytest.mark.parametrize(
    ("body", "limit", "deep"),
    [
        ([], 1, False),
        ([[]], 1, True),
        ([[]], 2, False),
        ([[[]]], 2, True),
        ({"a": {"b": {}}}, 2, True),
        ({"a": {"b": {}}}, 3, False),
        ({"a": [1, "x", None], "b": {}}, 1, True),
        ({"a": [1, "x", None], "b": {}}, 2, False),
        ({"a": [1, [2]]}, 2, True),
        ([1, 2, [3, 4, [5]]], 3, False),
        # The deep branch first, a shallower sibling container last: both are followed.
        ({"a": [[[[]]]], "b": [[]]}, 4, True),
        ({"a": [[[[]]]], "b": [[]]}, 5, False),
    ],
)
def test_too_deep_means_more_levels_than_the_limit_the_top_one_included(
    body: Any, limit: int, deep: bool
) -> None:
    assert _too_deep(body, limit) is deep


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("1e400", "1e400"),
        ("-1e400", "-1e400"),
        ("1" * 20 + "e9999", "1" * 20 + "e9999"),  # 25 characters: cut
        ("1" * 19 + "e9999", "1" * 19 + "e9999"),  # 24: shown whole
    ],
)
def test_a_number_out_of_range_is_named(number: str, shown: str) -> None:
    expected = shown if len(shown) <= 24 else shown[:20] + "…"
    assert error(b'{"t":' + number.encode() + b"}") == f"the number {expected} is out of range"


def test_a_large_finite_number_is_a_float() -> None:
    assert load_body(b'{"t":1.5e300,"u":-0.0}') == {"t": 1.5e300, "u": -0.0}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(constant: str) -> None:
    assert error(b'{"t":' + constant.encode() + b"}") == f"{constant} is not a JSON value"


def test_too_many_digits_and_invalid_json() -> None:
    assert error(b'{"t":' + b"9" * 5000 + b"}") == "a number in the body has too many digits"
    with pytest.raises(json.JSONDecodeError):
        load_body(b'{"t":')
    with pytest.raises(UnicodeDecodeError):
        load_body(b'{"t":"\xff\xfe"}')


@pytest.mark.parametrize("data", [b"[]", b'"x"', b"1", b"null"])
def test_the_body_must_be_an_object(data: bytes) -> None:
    assert error(data) == "the request body must be a JSON object"


FORM = (
    b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF\r\n'
    b"--b--\r\n"
)


@pytest.mark.parametrize("operation", ["image_edits", "transcriptions", "translations"])
def test_upload_routes_read_forms(operation: str) -> None:
    route = Route("openai", operation)
    assert load_request(route, FORM, "multipart/form-data; boundary=b") == {
        "model": "whisper-1",
        "file": UploadedFile("a.wav", "application/octet-stream", 4, b"RIFF"),
    }
    for content_type in ("application/json", None):
        with pytest.raises(RequestError) as caught:
            load_request(route, b"{}", content_type)
        assert str(caught.value) == "this endpoint takes a multipart/form-data body"


def test_other_routes_read_json_whatever_the_content_type() -> None:
    assert load_request(Route("openai", "chat"), b'{"a":1}', None) == {"a": 1}
    assert load_request(Route("openai", "images"), b'{"a":1}', "text/plain") == {"a": 1}


def test_a_patched_json_body_merges_the_patch_over_the_body() -> None:
    body = {"model": "a", "stream": True}
    out = patched_body(b"ignored", "application/json", body, {"model": "b", "x": [1]})
    assert out is not None and json.loads(out) == {"model": "b", "stream": True, "x": [1]}
    assert patched_body(b"ignored", None, body, {}) is None


def test_a_patched_form_sets_every_patched_field_as_text() -> None:
    out = patched_body(
        FORM, "multipart/form-data; boundary=b", {}, {"model": "m2", "temperature": 0.5}
    )
    assert out == FORM.replace(b"whisper-1", b"m2")  # no temperature field: none added
    out = patched_body(FORM, "Multipart/Form-Data; boundary=b", {}, {"model": 7})
    assert out == FORM.replace(b"whisper-1", b"7")
