"""No import circle inside the package.

Every import counts, wherever it stands: at the top, inside a function, or
under ``if TYPE_CHECKING:`` (a circle that only the type checker sees is
still two modules that cannot be read, tested or replaced one without the
other). Only imports of ssemedic's own modules are followed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "addons" / "ssemedic"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``ssemedic.core.session`` for ``core/session.py``; a package is named by its folder."""
    parts = ["ssemedic", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, name: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """The package's own modules that the module ``name`` imports, anywhere in ``tree``.

    ``from . import x`` names the submodule ``x`` when there is one, else the
    package itself; ``from .a import b`` names ``a`` (or ``a.b`` when that is a
    module)."""
    modules = set(known)
    package = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                targets.append(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            if target in modules and target != name:
                found.add(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    names = {module_name(p, root): p for p in paths}
    return {
        name: imported(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", names)
        for name, path in names.items()
    }


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph()
    assert len(graph) > 30 and graph["ssemedic.core.session"], "the graph was not read"
    assert circles(graph) == []


def test_a_circle_only_the_type_checker_sees_is_found(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import B\n")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import A\nclass B: ...\n")
    (pkg / "c.py").write_text("def f():\n    from . import a\n")
    graph = import_graph(pkg)
    assert graph["ssemedic.a"] == {"ssemedic.sub.b"}
    assert graph["ssemedic.sub"] == {"ssemedic.sub.b"}
    assert graph["ssemedic.c"] == {"ssemedic.a"}  # an import inside a function counts too
    assert circles(graph) == [["ssemedic.a", "ssemedic.sub.b"]]
