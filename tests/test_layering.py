"""core/ never imports Streamlit (but for its one glue module), precompute/ or pages/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLUE = {"core/ui_cache.py"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
    return mods


def top(name: str) -> str:
    return name.split(".")[0]


def test_core_imports_nothing_above_it():
    files = sorted((ROOT / "core").rglob("*.py"))
    assert len(files) >= 5, "core/ not found"
    problems = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        for mod in imported_modules(f):
            if top(mod) in {"precompute", "pages", "app"}:
                problems.append(f"{rel} imports {mod}")
            if top(mod) == "streamlit" and rel not in GLUE:
                problems.append(f"{rel} imports {mod}")
    assert not problems, problems


def test_nothing_imports_pages_or_precompute_from_outside():
    problems = []
    for folder, banned in (("precompute", {"pages", "app"}), ("pages", {"precompute"})):
        for f in (ROOT / folder).rglob("*.py"):
            for mod in imported_modules(f):
                if top(mod) in banned:
                    problems.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert not problems, problems


def test_the_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import streamlit as st\nfrom precompute.cli import main\n")
    assert {"streamlit", "precompute.cli"} <= imported_modules(bad)
