"""The house's layers, held by a scan of every import in src/fpt (lazy ones inside functions too):

    library      fpt.* except the three below   imports none of run, experiments, cli
    runner       fpt.run                        imports neither experiments nor cli
    experiments  fpt.experiments                imports not cli
    fpt/__init__ (the public API) and cli.py sit on top and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fpt"
ON_TOP = {"fpt", "fpt.cli", "fpt.__main__"}
FORBIDDEN = {"library": ("fpt.run", "fpt.experiments", "fpt.cli"),
             "runner": ("fpt.experiments", "fpt.cli"),
             "experiments": ("fpt.cli",)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str | None:
    if module in ON_TOP:
        return None
    if module == "fpt.run" or module.startswith("fpt.run."):
        return "runner"
    if module == "fpt.experiments" or module.startswith("fpt.experiments."):
        return "experiments"
    return "library"


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement in the file names (absolute; fpt uses no relative imports)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            found.append((node.lineno, node.module or ""))
            # `from fpt import distributed` names the module fpt.distributed
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def names_layer(imported: str, banned: tuple[str, ...]) -> bool:
    return any(imported == b or imported.startswith(b + ".") for b in banned)


SOURCES = sorted(SRC.rglob("*.py"))


def test_the_scan_sees_every_layer():
    layers = {layer(module_name(p)) for p in SOURCES}
    assert layers == {None, "library", "runner", "experiments"}
    assert len(SOURCES) > 40


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_layer_above_its_own(path):
    which = layer(module_name(path))
    if which is None:
        return
    bad = [f"line {line}: {name}" for line, name in imports(path) if names_layer(name, FORBIDDEN[which])]
    assert not bad, f"{path.relative_to(SRC)} ({which}) imports from a layer above it: {bad}"


def test_the_rule_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from fpt.run.train import train\n")
    assert any(names_layer(name, FORBIDDEN["library"]) for _, name in imports(bad))


# -- import cycles ----------------------------------------------------------------------------

def type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside `if TYPE_CHECKING:` blocks: never executed, so never part of a cycle."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """fpt module -> the fpt modules it imports (module level and inside functions alike, not
    under TYPE_CHECKING). `from fpt.x import y` names fpt.x.y when that is a module, else fpt.x;
    importing fpt.a.b runs fpt.a's __init__ too, so it counts as importing fpt.a."""
    modules = {module_name(p): p for p in SOURCES}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        skip = type_checking_lines(ast.parse(path.read_text()))
        targets: set[str] = set()
        for line, imported in imports(path):
            if line in skip or not imported.startswith("fpt"):
                continue
            while imported not in modules and "." in imported:  # fpt.x.y where y is a name in fpt.x
                imported = imported.rsplit(".", 1)[0]
            parts = imported.split(".")
            targets.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))  # packages run first
        graph[name] = {t for t in targets if t in modules and t != name and not (name + ".").startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_cycles():
    graph = {m: deps for m, deps in import_graph().items() if m not in ON_TOP}
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_catches_a_lazy_cycle():
    graph = {"fpt.a": {"fpt.b"}, "fpt.b": {"fpt.c"}, "fpt.c": {"fpt.a"}, "fpt.d": set()}
    assert find_cycle(graph) == ["fpt.a", "fpt.b", "fpt.c", "fpt.a"]
    assert find_cycle({"fpt.a": {"fpt.b"}, "fpt.b": set()}) == []
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fpt.model import FPTModel\n")
    assert type_checking_lines(tree) == {3}
