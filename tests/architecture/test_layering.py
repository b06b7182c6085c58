"""The package's layering, read from the source with ``ast`` (nothing is imported).

- The core (policy, providers, tokens, the counter contract and window arithmetic, and
  the catalog and identity values) imports no I/O library, and nothing of the package
  outside the core.
- No import cycles, between modules or between packages (top-level subpackages), counting
  the imports that run (``if TYPE_CHECKING:`` blocks are skipped; imports inside
  functions count).
- The web console reaches data only through the admin API: it imports no database or
  Redis library and nothing of the store, and of the admin package only the generated
  protos and stubs (`admin.v1`), except the module that runs it beside the admin
  server (`console.companion`). Nothing but the CLI imports the console.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = "policy_sidecar"

CORE = ("policy", "providers", "tokens", "counters", "catalog", "identity")
# Adapters that live in a core package and are imported by full path only.
CORE_ADAPTERS = {"policy_sidecar.counters.redis_store"}
IO_LIBRARIES = ("grpc", "redis", "psycopg", "psycopg_pool", "aiohttp", "prometheus_client")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for path in (ROOT / PKG).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _statements(body: list[ast.stmt], runtime: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if not runtime:
                yield from _statements(node.body, runtime)
            yield from _statements(node.orelse, runtime)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        for name in ("body", "orelse", "finalbody", "handlers"):
            sub = getattr(node, name, None)
            if isinstance(sub, list):
                yield from _statements([s for s in sub if isinstance(s, ast.stmt)], runtime)
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                yield from _statements(handler.body, runtime)


def _imports(module: str, *, runtime: bool) -> set[str]:
    """Absolute names this module imports (modules of the package resolved to modules)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _statements(ast.parse(path.read_text()).body, runtime):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            full = f"{base}.{alias.name}"
            out.add(full if full in MODULES else base)
    return out


def _internal(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph(*, runtime: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        targets = {_internal(i) for i in _imports(module, runtime=runtime) if i.startswith(PKG)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _is_core(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in CORE and module not in CORE_ADAPTERS


CORE_MODULES = sorted(m for m in MODULES if _is_core(m))


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_imports_no_io_and_nothing_outside_the_core(module: str) -> None:
    imported = _imports(module, runtime=False)
    io = sorted(i for i in imported if i.split(".")[0] in IO_LIBRARIES)
    assert io == [], f"{module} imports I/O: {io}"
    outside = sorted(
        t
        for i in imported
        if i.startswith(PKG) and (t := _internal(i)) is not None and not _is_core(t)
    )
    assert outside == [], f"{module} imports outside the core: {outside}"


def test_no_module_import_cycles() -> None:
    assert _cycles(_graph(runtime=True)) == []


def test_no_package_import_cycles() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _graph(runtime=True).items():
        for target in targets:
            if _part(module) != _part(target) and PKG not in (_part(module), _part(target)):
                packages.setdefault(_part(module), set()).add(_part(target))
    assert _cycles(packages) == []


def test_the_checker_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


CONSOLE = "policy_sidecar.console"
CONSOLE_RUNNER = "policy_sidecar.console.companion"
CONSOLE_FORBIDDEN = ("psycopg", "psycopg_pool", "redis", "policy_sidecar.store")
CONSOLE_MODULES = sorted(m for m in MODULES if m == CONSOLE or m.startswith(CONSOLE + "."))


@pytest.mark.parametrize("module", CONSOLE_MODULES)
def test_console_talks_to_the_admin_api_only(module: str) -> None:
    imported = _imports(module, runtime=False)
    forbidden = sorted(
        i for i in imported if any(i == f or i.startswith(f + ".") for f in CONSOLE_FORBIDDEN)
    )
    assert forbidden == [], f"{module} imports {forbidden}"
    admin = sorted(
        i
        for i in imported
        if i.startswith("policy_sidecar.admin") and not i.startswith("policy_sidecar.admin.v1")
    )
    if module != CONSOLE_RUNNER:
        assert admin == [], f"{module} imports the admin service's internals: {admin}"


def test_only_the_cli_imports_the_console() -> None:
    importers = sorted(
        m
        for m in MODULES
        if not m.startswith(CONSOLE)
        and any(i.startswith(CONSOLE) for i in _imports(m, runtime=False))
    )
    assert importers == ["policy_sidecar.cli.main"]
