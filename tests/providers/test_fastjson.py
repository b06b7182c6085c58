"""`fastjson.loads` gives exactly what ``json.loads`` gives: value, type, or error."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy_sidecar.providers import fastjson

CASES: list[bytes | str] = [
    b'{"a": 1, "a": 2}',
    b"1e400",
    b"-1e400",
    b"-0",
    b"-0.0",
    b"1.5e-7",
    b"123456789012345678901234567890",
    b"-9223372036854775809",
    b"9223372036854775808",
    b"-9223372036854775808",
    b"[1e19, -1e300, 1.0e19]",
    b'[[[{"a": [12345678901234567890123]}]]]',
    b"18446744073709551616",
    b'{"id": "1234567890123456789012", "n": 12345678901234567890}',
    b'"\\ud800"',
    b"NaN",
    b"[Infinity, -Infinity]",
    b"\xef\xbb\xbf{}",
    b" {} ",
    b"{}\n",
    '{"é": "\\u00e9"}'.encode(),
    '{"é": "ü"}',
    '"\ud800"',
    "[1, 2.5, true, false, null]",
    "[" * 5000 + "]" * 5000,
    b"",
    b"{",
    b'{"a": 1,}',
    b"\xff",
    '{"a": 1}'.encode("utf-16"),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _outcome(load: Any, data: bytes | str) -> tuple[str, Any]:
    try:
        return "value", load(data)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


@pytest.mark.parametrize("data", CASES)
def test_same_as_the_stdlib(data: bytes | str) -> None:
    want, got = _outcome(json.loads, data), _outcome(fastjson.loads, data)
    assert want[0] == got[0]
    assert _same(want[1], got[1]) if want[0] == "value" else want[1] is got[1]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
)


@given(JSON)
def test_same_as_the_stdlib_for_any_value(value: Any) -> None:
    text = json.dumps(value)
    for data in (text, text.encode()):
        want, got = _outcome(json.loads, data), _outcome(fastjson.loads, data)
        assert want[0] == got[0] == "value"
        assert _same(want[1], got[1])
