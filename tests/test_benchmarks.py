"""The benchmark scripts' results table: rows land in the right section and table."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.results_table import add_row

DOC = """# Results

## Alpha (`x`)

| a | b |
|---|---|
| 1 | 2 |

## Beta

text

| c |
|---|

| d |
|---|
| 4 |
"""


def test_rows_go_to_the_end_of_the_chosen_table(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(DOC)
    add_row("Alpha", "| 3 | 4 |", path=path)
    add_row("Beta", "| 5 |", table=0, path=path)
    add_row("Beta", "| 6 |", path=path)
    lines = path.read_text().splitlines()
    assert lines[lines.index("| 1 | 2 |") + 1] == "| 3 | 4 |"
    assert lines[lines.index("| c |") + 2] == "| 5 |"
    assert lines[-1] == "| 6 |" and lines[-2] == "| 4 |"


def test_an_unknown_section_or_table_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(DOC)
    with pytest.raises(KeyError, match="Gamma"):
        add_row("Gamma", "| x |", path=path)
    with pytest.raises(KeyError, match="no table 2"):
        add_row("Beta", "| x |", table=2, path=path)
    assert path.read_text() == DOC
