"""Typed field access for request bodies: each accessor's value, default and exact error
text, and the bounds on token counts and model names (found by mutation testing,
docs/testing.md)."""

from __future__ import annotations

from typing import Any

import pytest

from policy_sidecar.providers import RequestError
from policy_sidecar.providers._fields import (
    MAX_MODEL_CHARS,
    MAX_TOKEN_COUNT,
    compact_json,
    first_int,
    is_int,
    obj,
    opt_bool,
    opt_int,
    opt_list,
    opt_model,
    opt_str,
    req_list,
    req_model,
    req_str,
    type_name,
    wrong,
)


def error(call: Any, *args: Any) -> str:
    with pytest.raises(RequestError) as caught:
        call(*args)
    return str(caught.value)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ({}, "object"),
        ([], "array"),
        ("", "string"),
        (True, "boolean"),
        (1, "integer"),
        (1.5, "number"),
        (None, "null"),
        (b"x", "bytes"),
        ((), "tuple"),
    ],
)
def test_type_names_are_jsons(value: Any, name: str) -> None:
    assert type_name(value) == name


def test_wrong_names_the_path_the_expectation_and_the_type() -> None:
    assert str(wrong("a.b[0]", "a thing", [1])) == "'a.b[0]' must be a thing, got array"


def test_is_int_excludes_booleans() -> None:
    assert is_int(0) and is_int(-3)
    assert not is_int(True) and not is_int(1.0) and not is_int("1")


def test_req_str() -> None:
    assert req_str({"k": "v"}, "k") == "v"
    assert error(req_str, {}, "k") == "'k' is required"
    assert error(req_str, {}, "k", "p.k") == "'p.k' is required"
    assert error(req_str, {"k": None}, "k") == "'k' must be a non-empty string, got null"
    assert error(req_str, {"k": ""}, "k", "p.k") == "'p.k' must be a non-empty string, got string"
    assert error(req_str, {"k": 1}, "k") == "'k' must be a non-empty string, got integer"


def test_opt_str() -> None:
    assert opt_str({}, "k") is None
    assert opt_str({"k": None}, "k") is None
    assert opt_str({"k": ""}, "k") == ""
    assert error(opt_str, {"k": 1}, "k") == "'k' must be a string, got integer"
    assert error(opt_str, {"k": []}, "k", "p.k") == "'p.k' must be a string, got array"


def test_model_names() -> None:
    assert req_model({"model": "m" * MAX_MODEL_CHARS}) == "m" * MAX_MODEL_CHARS
    assert req_model({"model": "modèle"}) == "modèle"
    assert req_model({"name": "x"}, "name") == "x"
    assert error(req_model, {"model": "m" * (MAX_MODEL_CHARS + 1)}) == (
        "'model' must be at most 256 characters"
    )
    assert error(req_model, {"name": "\udc80"}, "name") == "'name' must be valid Unicode text"
    assert error(req_model, {"name": 1}, "name") == "'name' must be a non-empty string, got integer"
    assert error(req_model, {}) == "'model' is required"
    assert opt_model({}) is None
    assert opt_model({"model": "é"}) == "é"
    assert opt_model({"name": "x"}, "name") == "x"
    assert error(opt_model, {"name": "n" * 257}, "name") == "'name' must be at most 256 characters"
    assert error(opt_model, {"name": 2}, "name") == "'name' must be a string, got integer"


def test_opt_bool() -> None:
    assert opt_bool({}, "k") is False
    assert opt_bool({"k": None}, "k") is False
    assert opt_bool({"k": True}, "k") is True
    assert opt_bool({"k": False}, "k") is False
    assert error(opt_bool, {"k": 1}, "k") == "'k' must be a boolean, got integer"
    assert error(opt_bool, {"k": "true"}, "k", "p.k") == "'p.k' must be a boolean, got string"


def test_opt_int_bounds() -> None:
    assert opt_int({}, "k") is None
    assert opt_int({"k": None}, "k") is None
    assert opt_int({"k": 0}, "k") == 0
    assert opt_int({"k": MAX_TOKEN_COUNT}, "k") == MAX_TOKEN_COUNT
    assert error(opt_int, {"k": -1}, "k") == "'k' must be a non-negative integer, got integer"
    assert error(opt_int, {"k": True}, "k", "p.k") == (
        "'p.k' must be a non-negative integer, got boolean"
    )
    assert error(opt_int, {"k": MAX_TOKEN_COUNT + 1}, "k") == "'k' must be at most 2147483647"
    assert error(opt_int, {"k": 2**40}, "k", "p.k") == "'p.k' must be at most 2147483647"


def test_first_int_takes_the_first_present_key() -> None:
    assert first_int({"a": None, "b": 2, "c": 3}, "a", "b", "c") == 2
    assert first_int({"c": 3}, "a", "b", "c") == 3
    assert first_int({}, "a", "b") is None
    assert first_int({"a": None}, "a") is None
    assert error(first_int, {"a": None, "b": -1}, "a", "b") == (
        "'b' must be a non-negative integer, got integer"
    )


def test_lists() -> None:
    assert opt_list({}, "k") == []
    assert opt_list({"k": None}, "k") == []
    assert opt_list({"k": [1]}, "k") == [1]
    assert error(opt_list, {"k": {}}, "k") == "'k' must be an array, got object"
    assert error(opt_list, {"k": "x"}, "k", "p.k") == "'p.k' must be an array, got string"
    assert req_list({"k": []}, "k") == []
    assert error(req_list, {}, "k") == "'k' is required"
    assert error(req_list, {"k": None}, "k", "p.k") == "'p.k' is required"
    assert error(req_list, {"k": 1}, "k", "p.k") == "'p.k' must be an array, got integer"


def test_obj() -> None:
    assert obj({"a": 1}, "p") == {"a": 1}
    assert error(obj, [1], "p[0]") == "'p[0]' must be an object, got array"


def test_compact_json_keeps_order_and_text() -> None:
    assert compact_json({"b": 1, "a": ["é", None]}) == '{"b":1,"a":["é",null]}'
