"""The parser (or a config dataclass) is the only home of a job's defaults: no job falls back on its own."""

from __future__ import annotations

import ast
from pathlib import Path

PRECOMPUTE = Path(__file__).resolve().parents[1] / "precompute"


def getattr_defaults(source: str) -> list[int]:
    """Lines of ``getattr(args, name, default)`` calls in ``source`` (a default repeated outside the parser)."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) == 3 and isinstance(node.args[0], ast.Name) and node.args[0].id == "args"]


def test_the_check_finds_a_fallback() -> None:
    assert getattr_defaults('x = getattr(args, "seed", 0)\ny = getattr(args, key)\n') == [1]


def test_no_job_repeats_a_flag_default() -> None:
    found = {p.name: lines for p in sorted(PRECOMPUTE.glob("*.py"))
             if (lines := getattr_defaults(p.read_text(encoding="utf-8")))}
    assert found == {}, f"getattr(args, ..., default) repeats a flag default: {found}"
