"""The documentation a newcomer reads: README.md and docs/*.md stay short, linked and current.

- docs/API.md is exactly what `python scripts/api_docs.py` generates from the public docstrings.
- README.md stays short (at most 260 lines) and has a "Contents" section that links each of its
  own `## ` sections and the pages under docs/; every docs/*.md is reachable from README.md.
- Every relative link `[text](path)` or `[text](path#anchor)` in README.md and docs/*.md (outside
  code blocks and inline code) points at a file or folder that exists in the repository; an anchor
  into a Markdown file (or into the same file, `(#anchor)`) must be the GitHub slug of one of that
  file's headings. http(s) and mailto links are not checked. Images and reports are checked only
  for existence.
- The README's Layout section names every module under src/fpt, and only those (see
  `test_layout_names_every_module` for the exact rule).

Everything is read relative to the repository root; nothing here needs ../shared or the network.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PACKAGE = ROOT / "src" / "fpt"
MAX_README_LINES = 260

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def load_api_docs():
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "scripts" / "api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def without_code(text: str) -> str:
    """The text with fenced blocks removed and inline code spans blanked (links there are examples)."""
    text = FENCE.sub("", text)
    return INLINE_CODE.sub(lambda m: "code", text)


def links(text: str) -> list[str]:
    return [m.group(2) for m in LINK.finditer(without_code(text))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for m in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(m.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def section(text: str, title: str) -> str:
    """The body of the `## title` section of a Markdown text, up to the next `## ` heading."""
    parts = re.split(rf"^## {re.escape(title)}[ \t]*$", text, maxsplit=1, flags=re.M)
    assert len(parts) == 2, f"README.md has no '## {title}' section"
    return re.split(r"^## ", parts[1], maxsplit=1, flags=re.M)[0]


# --- docs/API.md ------------------------------------------------------------------------------

def test_api_md_is_current():
    api_docs = load_api_docs()
    expected = api_docs.render()
    path = DOCS / "API.md"
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    if current != expected:
        import difflib

        diff = "\n".join(list(difflib.unified_diff(current.splitlines(), expected.splitlines(),
                                                   "docs/API.md", "render()", lineterm="", n=1))[:30])
        pytest.fail(f"docs/API.md is stale: run python scripts/api_docs.py\n{diff}")


def test_api_docs_check_flags_a_stale_file(tmp_path, monkeypatch, capsys):
    api_docs = load_api_docs()
    stale = tmp_path / "API.md"
    stale.write_text("# API reference\n\nold\n", encoding="utf-8")
    monkeypatch.setattr(api_docs, "OUT", stale)
    assert api_docs.main(["--check"]) == 1
    assert capsys.readouterr().err.strip() == "docs/API.md is stale: run python scripts/api_docs.py"
    stale.write_text(api_docs.render(), encoding="utf-8")
    assert api_docs.main(["--check"]) == 0


def test_api_docs_are_deterministic_and_cover_all():
    import fpt

    api_docs = load_api_docs()
    text = api_docs.render()
    assert text == api_docs.render()
    assert " at 0x" not in text and str(ROOT) not in text
    for name in fpt.__all__:
        assert f"\n## `{name}`\n" in text, f"docs/API.md has no entry for fpt.{name}"


# --- README.md --------------------------------------------------------------------------------

def test_readme_is_short_and_has_contents():
    text = README.read_text(encoding="utf-8")
    n_lines = len(text.splitlines())
    assert n_lines <= MAX_README_LINES, (
        f"README.md has {n_lines} lines (at most {MAX_README_LINES}): move detail into a page under docs/")
    contents = section(text, "Contents")
    targets = links(contents)
    assert any(t.startswith("#") for t in targets), "Contents links none of the README's own sections"
    assert any(t.startswith("docs/") for t in targets), "Contents links none of the pages under docs/"
    for heading in re.findall(r"^## (.+)$", FENCE.sub("", text), re.M):
        if heading.strip() != "Contents":
            assert f"#{slug(heading)}" in targets, f"Contents does not link the README's section '{heading}'"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    bad = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^(https?:|mailto:)", target) or not target:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            bad.append(f"{target} (no such file in the repository)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            bad.append(f"{target} (no heading with anchor #{anchor} in {resolved.relative_to(ROOT)})")
    assert not bad, f"{path.relative_to(ROOT)}: broken links:\n  " + "\n  ".join(bad)


def test_every_docs_page_is_reachable_from_the_readme():
    """A page nobody links to is a page nobody finds: every docs/*.md is reached from README.md
    by following relative links through README.md and docs/*.md."""
    pages = {p.resolve() for p in DOCS.glob("*.md")}
    reached, todo = set(), [README.resolve()]
    while todo:
        path = todo.pop()
        if path in reached:
            continue
        reached.add(path)
        for target in links(path.read_text(encoding="utf-8")):
            file_part = target.partition("#")[0]
            if not file_part or re.match(r"^(https?:|mailto:)", target):
                continue
            resolved = (path.parent / file_part).resolve()
            if resolved in pages or resolved == README.resolve():
                todo.append(resolved)
    missing = sorted(str(p.relative_to(ROOT)) for p in pages - reached)
    assert not missing, f"no link from README.md (directly or through docs/) reaches: {missing}"


def test_layout_names_every_module():
    """The README's `## Layout` section names every .py file under src/fpt, as its path relative
    to src/fpt. The rule, per module:

    - `a/b.py` (or top-level `b.py`) is named when that exact path appears as a token: not preceded
      by a letter, digit, `_`, `.`, `/` or `-` and not followed by a letter, digit, `_` or `.`
      (so `tasks/model.py` does not name the top-level `model.py`, nor `predict.py` name
      `predict_series.py`);
    - a package's `a/__init__.py` is named by `a/__init__.py` or by the folder `a/` on its own
      (a token `a/` not followed by a letter, digit, `_` or `.`, so `tasks/base.py` does not count
      as naming `tasks/`);
    - the top-level `__init__.py` is named by `__init__.py` or by `src/fpt/`.

    A module added or renamed under src/fpt needs its line in the Layout section.
    """
    layout = section(README.read_text(encoding="utf-8"), "Layout")

    def named(token: str) -> bool:
        return re.search(rf"(?<![\w./-]){re.escape(token)}(?![\w.])", layout) is not None

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py":
            folder = path.parent.relative_to(PACKAGE).as_posix()
            tokens = ["__init__.py", "src/fpt/"] if folder == "." else [rel, f"{folder}/"]
        else:
            tokens = [rel]
        if not any(named(t) for t in tokens):
            missing.append(rel)
    assert not missing, (
        "README.md's Layout section does not name these modules under src/fpt "
        f"(add one line each, as the path relative to src/fpt): {missing}")


def test_layout_names_only_modules_that_exist():
    """The other direction: each line of the Layout block indented by two spaces (the lines under
    `src/fpt/`) starts with a path relative to src/fpt, a `.py` file or a `folder/`, that exists,
    so a module renamed or removed does not leave a stale line behind."""
    layout = section(README.read_text(encoding="utf-8"), "Layout")
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", layout, re.M | re.S)
    assert blocks, "README.md's Layout section has no code block listing the modules"
    stale = []
    for line in blocks[0].splitlines():
        m = re.match(r"^  (\S+)", line)
        if m and (m.group(1).endswith(".py") or m.group(1).endswith("/")):
            if not (PACKAGE / m.group(1)).exists():
                stale.append(m.group(1))
    assert not stale, f"README.md's Layout section names modules that are not under src/fpt: {stale}"
