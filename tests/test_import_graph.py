"""The import graph of src/ and plugins/*/src has no cycles (built with ``ast``, nothing is imported), the
core imports no plugin and no plugin imports another (each ships as its own distribution).

Every import counts, wherever it stands: at module level, inside a function (a deferred import is still
a dependency, only a later one) and under ``if TYPE_CHECKING:`` (the type checker follows it). A
module's implicit import of its parent packages is not an edge (as in import-linter and pydeps).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = [ROOT / "src", *sorted((ROOT / "plugins").glob("*/src"))]


def _modules() -> dict[str, Path]:
    out = {}
    for path, parts in (
        (p, p.relative_to(r).with_suffix("").parts) for r in SOURCE_ROOTS for p in r.rglob("*.py")
    ):
        parts = list(parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` (a dotted module or module.attribute) lands in, if any."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{a.name}" for a in node.names]
            for name in names:
                target = _target(name, modules)
                if target is not None and target != mod:
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_of_every_kind() -> None:
    graph = import_graph()
    assert "lipsynckit.errors" in graph["lipsynckit.model"]  # module level
    assert "lipsynckit.weights" in graph["lipsynckit.model"]  # inside a function only
    assert "lipsynckit_latentsync.unet" in graph["lipsynckit_latentsync.loader"]  # relative


def test_no_import_cycles_in_src() -> None:
    graph = import_graph()
    found = cycles(graph)
    detail = [
        " <-> ".join(c) + "\n    " + "; ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c)
        for c in found
    ]
    assert not found, "import cycles:\n  " + "\n  ".join(detail)


def test_each_distribution_imports_only_the_core_and_itself() -> None:
    """The core wheel holds no plugin and a plugin may be installed alone: no cross-distribution edge."""
    top = {root: {p.name for p in root.iterdir() if (p / "__init__.py").exists()} for root in SOURCE_ROOTS}
    assert top[ROOT / "src"] == {"lipsynckit"}
    assert len(SOURCE_ROOTS) == 4 and all(len(names) == 1 for names in top.values()), top
    crossing = [
        f"{a} -> {b}"
        for a, targets in import_graph().items()
        for b in targets
        if b.split(".")[0] not in {a.split(".")[0], "lipsynckit"}
    ]
    assert not crossing, crossing
