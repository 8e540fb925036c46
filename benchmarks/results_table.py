"""Adding a measured row to a section's table in ``benchmarks/results.md``."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.md"


def add_row(section: str, row: str, table: int = -1, path: Path = RESULTS) -> None:
    """Insert ``row`` (one Markdown table line) at the end of a table (``table``: its index among the
    section's tables, default the last) of the section whose heading starts with ``## <section>``;
    raises when there is no such section or table."""
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"## {section}")), None)
    if start is None:
        raise KeyError(f"{path.name} has no section '## {section}'")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rows = [i for i in range(start, end) if lines[i].startswith("|")]
    ends = [i for i in rows if i + 1 not in rows]  # the last line of each table
    if not ends or not -len(ends) <= table < len(ends):
        raise KeyError(f"section '## {section}' of {path.name} has no table {table}")
    lines.insert(ends[table] + 1, row.rstrip("\n"))
    path.write_text("\n".join(lines) + "\n")
