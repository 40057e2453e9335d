"""The package's import structure: ``riad_agent.models`` is a leaf, and no import cycle exists.

Every module of the installed package is parsed with ``ast`` (nothing is imported), the mapped
packages ``riad_agent.graphs``, ``riad_agent.tools`` and ``riad_agent.knowledge`` included. An import
names the module it reads (``from riad_agent.expert import features`` -> ``riad_agent.expert.features``,
``from riad_agent.expert import open_expert`` -> ``riad_agent.expert``); a relative import is resolved
against its own package.

Choices:

* The layering check reads *every* import, at module level or inside a function, class or
  ``if TYPE_CHECKING:`` block: a lazy import is still a dependency of the layer.
* The cycle check reads every import that runs, lazy ones inside functions included (the loop
  ``models.loading`` -> ``models.builtin.loading`` -> ``models.loading`` went through a lazy import),
  but not ``if TYPE_CHECKING:`` imports, which never run.
* Importing ``a.b.c`` runs the package ``a.b``'s ``__init__`` first; that implicit edge is not
  counted, or every package whose ``__init__`` re-exports its own submodules would be a cycle.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT_PACKAGES = ("riad_agent", "riad_agent.graphs", "riad_agent.tools", "riad_agent.knowledge")
LEAF = "riad_agent.models"
ABOVE_THE_LEAF = (
    "reasoning",
    "qa",
    "expert",
    "knowledge",
    "graphs",
    "tools",
    "commands",
    "training",
    "eval",
    "bench",
    "serving",
)


@dataclass(frozen=True)
class Import:
    """One import statement's target module, and whether it runs (not under ``TYPE_CHECKING``)."""

    target: str
    line: int
    runs: bool


def _package_folders() -> dict[str, Path]:
    folders = {}
    for name in ROOT_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
        folders[name] = Path(next(iter(spec.submodule_search_locations)))
    return folders


def _modules() -> dict[str, Path]:
    """Module name -> source file, for every module inside a package folder (``__init__.py`` on the way)."""
    modules: dict[str, Path] = {}
    for package, folder in _package_folders().items():
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(folder)
            if "__pycache__" in relative.parts:
                continue
            folders = [folder / Path(*relative.parts[:i]) for i in range(len(relative.parts))]
            if not all((inside / "__init__.py").is_file() for inside in folders):
                continue  # a script folder, not a package
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            modules.setdefault(name, path)  # riad_agent/graphs (if any) never shadows the mapped one
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: list[ast.stmt], runs: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every statement under ``body`` (functions and classes included), with whether it runs."""
    for node in body:
        yield node, runs
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, False)
            yield from _statements(node.orelse, runs)
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, field, None)
            if isinstance(children, list):
                stmts = [c for c in children if isinstance(c, ast.stmt)]
                blocks = [c for c in children if isinstance(c, ast.excepthandler | ast.match_case)]
                stmts += [s for block in blocks for s in block.body]
                yield from _statements(stmts, runs)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The known module ``name`` refers to (its longest known prefix), or None outside the package."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _imports(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node, runs in _statements(tree.body, True):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for name in names:
            target = _resolve(name, modules) if name.startswith("riad_agent") else None
            if target is not None and target != module:
                found.append(Import(target, node.lineno, runs))
    return found


def _graph() -> tuple[dict[str, Path], dict[str, list[Import]]]:
    modules = _modules()
    return modules, {name: _imports(name, path, modules) for name, path in modules.items()}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_walk_sees_the_whole_package() -> None:
    modules, _ = _graph()
    for expected in (
        "riad_agent.models.base",
        "riad_agent.models.builtin.adapter",
        "riad_agent.reasoning.latent_loop",
        "riad_agent.graphs",
        "riad_agent.tools",
        "riad_agent.knowledge",
    ):
        assert expected in modules


def test_the_walk_reads_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    source = tmp_path / "b.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import c\n"
        "if TYPE_CHECKING:\n"
        "    from riad_agent.x.d import Thing\n"
        "def lazy() -> None:\n"
        "    try:\n"
        "        import riad_agent.y\n"
        "    except ImportError:\n"
        "        from riad_agent.x import name_not_a_module\n",
        encoding="utf-8",
    )
    names = ("riad_agent.x", "riad_agent.x.b", "riad_agent.x.c", "riad_agent.x.d", "riad_agent.y")
    modules = dict.fromkeys(names, source)
    found = {(i.target, i.runs) for i in _imports("riad_agent.x.b", source, modules)}
    assert found == {
        ("riad_agent.x.c", True),
        ("riad_agent.x.d", False),
        ("riad_agent.y", True),
        ("riad_agent.x", True),
    }
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_models_import_nothing_above_them() -> None:
    modules, imports = _graph()
    forbidden = tuple(f"riad_agent.{name}" for name in ABOVE_THE_LEAF)
    offences = sorted(
        {
            f"{module}:{found.line} imports {found.target}"
            for module in modules
            if _within(module, LEAF)
            for found in imports[module]
            if any(_within(found.target, layer) for layer in forbidden)
        }
    )
    assert not offences, "riad_agent.models must stay a leaf:\n" + "\n".join(offences)


def test_no_import_cycle() -> None:
    _, imports = _graph()
    edges = {module: {i.target for i in found if i.runs} for module, found in imports.items()}
    cycles = _strongly_connected(edges)
    assert not cycles, "import cycles (modules that reach each other):\n" + "\n".join(
        " <-> ".join(component) for component in cycles
    )
