"""The two CEL engines behind ``compile_expression``.

``cel-expr`` (cel-expr-python, the official C++ runtime) type-checks at compile time:
unknown identifiers and functions, operator overloads, and the result type.

``cel-python`` (celpy) has no checker. At compile time we (1) reject identifiers that
are neither declared, nor type names, nor bound by a macro (``exists``, ``map``...), found by
walking the parse tree, and (2) evaluate the expression against two sets of typed dummy
values (zero-like and one-like); an overload error or a non-bool result rejects it.
What this cannot catch: type errors and unknown functions in branches neither dummy set
reaches (e.g. ``model == "gpt-4o" && model > 3``), and macro-variable names that shadow
declared variables. Division by zero on a dummy is not an error (it is a runtime one).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import celpy
import lark
from cel_expr_python import cel
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from policy_sidecar.policy.cel_contract import (
    CelCompileError,
    CelEvaluationError,
    CompiledExpression,
    EngineName,
    Phase,
    VarType,
    variables_for,
)

__all__ = ["CelEngine", "CelExprEngine", "CelPythonEngine", "engine_for"]

_CEL_TYPES = {
    VarType.BOOL: cel.Type.BOOL,
    VarType.INT: cel.Type.INT,
    VarType.DOUBLE: cel.Type.DOUBLE,
    VarType.STRING: cel.Type.STRING,
}
# Identifier-like words, string literals included: a superset of the variables used.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ERROR_AT = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")


class CelEngine(ABC):
    """Compiles sources against one phase's declared variables."""

    @abstractmethod
    def compile(self, source: str) -> CompiledExpression: ...


# --- cel-expr-python ------------------------------------------------------------------


class _CelExprExpression:
    __slots__ = ("_expr", "_names", "source")

    def __init__(self, source: str, expr: cel.Expression, names: tuple[str, ...]) -> None:
        self.source = source
        self._expr = expr
        # The binding converts every entry it is given (~0.5 us each): pass only these.
        self._names = names

    def evaluate(self, variables: Mapping[str, object]) -> bool:
        data = {n: variables[n] for n in self._names if n in variables}
        try:
            value = self._expr.eval(data=data)
        except Exception as exc:  # the binding raises on unconvertible inputs
            raise CelEvaluationError(str(exc)) from exc
        result = value.value()
        if result is True or result is False:
            return result
        raise CelEvaluationError(str(result))


class CelExprEngine(CelEngine):
    def __init__(self, variables: Mapping[str, VarType]) -> None:
        self._env = cel.NewEnv(variables={n: _CEL_TYPES[t] for n, t in variables.items()})
        self._names = tuple(variables)

    def compile(self, source: str) -> CompiledExpression:
        try:
            expr = self._env.compile(source)
        except RuntimeError as exc:
            raise _cel_expr_error(str(exc)) from None
        result_type = expr.return_type()
        if result_type != cel.Type.BOOL:
            raise CelCompileError(
                f"expression must evaluate to bool, not {result_type.name().lower()}"
            )
        words = set(_WORD.findall(source))
        names = tuple(sorted(n for n in self._names if n in words))
        return _CelExprExpression(source, expr, names)


def _cel_expr_error(text: str) -> CelCompileError:
    found = _ERROR_AT.findall(text)
    if not found:
        return CelCompileError(text.strip())
    line, column, message = found[0]
    if len(found) > 1:
        message += f" (and {len(found) - 1} more)"
    return CelCompileError(message.strip(), line=int(line), column=int(column))


# --- cel-python (celpy) ---------------------------------------------------------------

_CELPY_CONVERT: dict[VarType, tuple[type | tuple[type, ...], Callable[[Any], object]]] = {
    VarType.BOOL: (bool, celtypes.BoolType),
    VarType.INT: (int, celtypes.IntType),
    VarType.DOUBLE: ((float, int), celtypes.DoubleType),
    VarType.STRING: (str, celtypes.StringType),
}
_DUMMIES: tuple[dict[VarType, object], ...] = (
    {VarType.BOOL: False, VarType.INT: 0, VarType.DOUBLE: 0.0, VarType.STRING: ""},
    {VarType.BOOL: True, VarType.INT: 1, VarType.DOUBLE: 1.0, VarType.STRING: "x"},
)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# Type names are identifiers too (``type(model) == string``), not variables.
_TYPE_NAMES = frozenset(
    {
        "bool",
        "bytes",
        "double",
        "duration",
        "int",
        "list",
        "map",
        "null_type",
        "string",
        "timestamp",
        "type",
        "uint",
    }
)
_CELPY_CLASS = re.compile(r"<class 'celpy\.celtypes\.(\w+?)(?:Type)?'>")
_CELPY_TOKEN = re.compile(r"Token\('RULE', '(\w+)'\)")


class _CelPythonExpression:
    __slots__ = ("_program", "_types", "source")

    def __init__(self, source: str, program: Any, types: Mapping[str, VarType]) -> None:
        self.source = source
        self._program = program
        self._types = types  # only the variables the expression references

    def evaluate(self, variables: Mapping[str, object]) -> bool:
        activation: dict[str, object] = {}
        for name, var_type in self._types.items():
            if name not in variables:
                raise CelEvaluationError(f"missing variable {name!r}")
            accepted, convert = _CELPY_CONVERT[var_type]
            value = variables[name]
            if not isinstance(value, accepted) or (var_type is VarType.INT and value is True):
                raise CelEvaluationError(f"{name!r} must be {var_type}, got {type(value).__name__}")
            activation[name] = convert(value)
        try:
            result = self._program.evaluate(activation)
        except CELEvalError as exc:
            raise CelEvaluationError(str(exc.args[0] if exc.args else exc)) from exc
        if isinstance(result, CELEvalError):
            raise CelEvaluationError(str(result.args[0] if result.args else result))
        if not isinstance(result, celtypes.BoolType):
            raise CelEvaluationError(f"result is not a bool: {result!r}")
        return bool(result)


class CelPythonEngine(CelEngine):
    def __init__(self, variables: Mapping[str, VarType]) -> None:
        self._variables = dict(variables)
        self._env = celpy.Environment()

    def compile(self, source: str) -> CompiledExpression:
        try:
            tree = self._env.compile(source)
        except CELParseError as exc:
            snippet = str(exc.args[0]).splitlines()[0].strip() if exc.args else ""
            raise CelCompileError(
                f"syntax error near {snippet!r}", line=exc.line or 1, column=exc.column or 1
            ) from None
        used = _referenced(tree) - _TYPE_NAMES
        unknown = sorted(used - self._variables.keys())
        if unknown:
            raise CelCompileError(f"undeclared reference to {unknown[0]!r}")
        types = {name: self._variables[name] for name in sorted(used)}
        compiled = _CelPythonExpression(source, self._env.program(tree), types)
        for dummy in _DUMMIES:
            _check_with_dummies(compiled, {n: dummy[t] for n, t in types.items()})
        return compiled


def _check_with_dummies(compiled: _CelPythonExpression, values: Mapping[str, object]) -> None:
    try:
        compiled.evaluate(values)
    except CelEvaluationError as exc:
        cause = exc.__cause__
        cause_type = (
            cause.args[1] if isinstance(cause, CELEvalError) and len(cause.args) > 1 else None
        )
        if cause_type is ZeroDivisionError:
            return
        if cause_type in (TypeError, KeyError) or "not a bool" in str(exc):
            raise CelCompileError(_short(str(exc))) from None
        # other runtime failures (overflow, ...) depend on the data, not the types


def _short(message: str) -> str:
    if message.startswith("result is not a bool"):
        return "expression must evaluate to bool"
    message = message.split(" (in activation")[0]
    message = _CELPY_CLASS.sub(lambda m: m.group(1).lower(), message)
    return _CELPY_TOKEN.sub(lambda m: m.group(1), message)


def _referenced(tree: lark.Tree[Any]) -> set[str]:
    """Free identifiers: every ``ident`` minus names bound by comprehension macros."""
    names: set[str] = set()
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "ident":
            names.add(str(node.children[0]))
        elif node.data == "member_dot_arg" and len(node.children) >= 3:
            method, args = node.children[1], node.children[2]
            if str(method) in _MACROS and isinstance(args, lark.Tree) and args.children:
                first = args.children[0]
                if isinstance(first, lark.Tree):
                    bound.update(str(t) for t in first.scan_values(lambda v: True))
    return names - bound


@cache
def engine_for(name: EngineName, phase: Phase) -> CelEngine:
    """One engine (and CEL environment) per engine name and phase, built on first use."""
    variables = variables_for(phase)
    if name == "cel-expr":
        return CelExprEngine(variables)
    if name == "cel-python":
        return CelPythonEngine(variables)
    raise ValueError(f"unknown CEL engine {name!r}; expected 'cel-expr' or 'cel-python'")
