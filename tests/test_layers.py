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
