"""One table, both CEL engines."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from policy_sidecar.policy.cel import (
    CelCompileError,
    CelEvaluationError,
    EngineName,
    Phase,
    compile_expression,
)

ENGINES: list[EngineName] = ["cel-expr", "cel-python"]

PRE: dict[str, object] = {
    "request_size_bytes": 2048,
    "estimated_tokens": 1500,
    "model": "gpt-4o-mini",
    "org_id": "org-1",
    "app_id": "app-1",
    "environment": "prod",
    "provider": "openai",
    "stream": True,
    "max_tokens": 512,
}
POST: dict[str, object] = {
    **PRE,
    "prompt_tokens": 1400,
    "completion_tokens": 300,
    "total_tokens": 1700,
    "cached_tokens": 1024,
    "reasoning_tokens": 0,
    "latency_ms": 850,
    "response_size_bytes": 9000,
    "status_code": 200,
    "cost_usd": 0.0123,
}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> EngineName:
    name: EngineName = request.param
    return name


@pytest.mark.parametrize(
    ("phase", "source", "expected"),
    [
        (Phase.PRE, "estimated_tokens < 4000", True),
        (Phase.PRE, "estimated_tokens > 4000", False),
        (Phase.PRE, 'model.startsWith("gpt-4o") && environment == "prod"', True),
        (Phase.PRE, 'model in ["claude-3-haiku", "gemini-2.0-flash"]', False),
        (Phase.PRE, "stream && max_tokens <= 1024", True),
        (Phase.PRE, '!(provider == "openai") || request_size_bytes < 1000', False),
        (Phase.PRE, '["o1", "gpt-4o"].exists(p, model.startsWith(p))', True),
        (Phase.PRE, 'app_id == "app-1"\n  && org_id != "org-2"', True),
        (Phase.PRE, "type(model) == string && size(model) > 3", True),
        (Phase.PRE, 'model.matches("^claude")', False),
        (Phase.POST, "total_tokens != prompt_tokens + completion_tokens", False),
        (Phase.POST, "completion_tokens > 2 * reasoning_tokens", True),
        (Phase.POST, "cost_usd < 0.05 && latency_ms < 1000", True),
        (Phase.POST, "status_code >= 500 || cached_tokens * 2 > prompt_tokens", True),
        (Phase.POST, "response_size_bytes > 10000 ? false : estimated_tokens > 1000", True),
        (Phase.POST, "double(total_tokens) / 1000.0 * 0.01 > cost_usd", True),
    ],
)
def test_evaluates(engine: EngineName, phase: Phase, source: str, expected: bool) -> None:
    compiled = compile_expression(source, phase, engine=engine)
    assert compiled.source == source
    assert compiled.evaluate(PRE if phase is Phase.PRE else POST) is expected


@pytest.mark.parametrize(
    ("phase", "source", "fragment", "line", "column"),
    [
        (Phase.PRE, "model > 3", "matching overload", 1, None),
        (Phase.PRE, "estimated_tokens > 1.5", "matching overload", 1, None),
        (Phase.PRE, "unknown_var == 1", "undeclared reference to 'unknown_var'", 1, 1),
        (Phase.PRE, "total_tokens > 10", "undeclared reference to 'total_tokens'", 1, 1),
        (Phase.PRE, "estimated_tokens + 1", "must evaluate to bool", 1, 1),
        (Phase.PRE, "model", "must evaluate to bool", 1, 1),
        (Phase.POST, "cost_usd * 2.0", "must evaluate to bool", 1, 1),
        (Phase.PRE, 'model == "a" &&\n  estimated_tokens >> 2', "", 2, 21),
        (Phase.PRE, "estimated_tokens == 1 ]", "", 1, 23),
        (Phase.PRE, "model = 'x'", "", 1, 7),
        (Phase.PRE, "   ", "empty", 1, 1),
    ],
)
def test_compile_errors(
    engine: EngineName,
    phase: Phase,
    source: str,
    fragment: str,
    line: int,
    column: int | None,
) -> None:
    with pytest.raises(CelCompileError) as caught:
        compile_expression(source, phase, engine=engine)
    error = caught.value
    assert fragment in error.message
    assert error.line == line
    if column is not None:
        assert error.column == column


@pytest.mark.parametrize(
    ("source", "variables"),
    [
        ("estimated_tokens / (max_tokens - 512) > 1", PRE),
        ("estimated_tokens % 0 == 1", PRE),
        ("estimated_tokens > 10", {"model": "m"}),
        ('model == "x"', {"model": 42}),
    ],
)
def test_runtime_errors(engine: EngineName, source: str, variables: Mapping[str, object]) -> None:
    compiled = compile_expression(source, Phase.PRE, engine=engine)
    with pytest.raises(CelEvaluationError):
        compiled.evaluate(variables)


def test_unknown_engine_rejected() -> None:
    with pytest.raises(ValueError, match="unknown CEL engine"):
        compile_expression("true", Phase.PRE, engine="v8")  # type: ignore[arg-type]


def test_phase_accepts_its_string_value() -> None:
    assert compile_expression("max_tokens > 0", "pre").evaluate(PRE) is True


def test_compiled_expression_is_reusable(engine: EngineName) -> None:
    compiled = compile_expression("estimated_tokens < 1000", Phase.PRE, engine=engine)
    results = [compiled.evaluate({**PRE, "estimated_tokens": n}) for n in (10, 5000, 999)]
    assert results == [True, False, True]
