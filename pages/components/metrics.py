"""A row of headline numbers ("metrics") as one element of the page in light mode (one ``st.html`` block in
place of a column and an ``st.metric`` per number: fewer elements for the browser to render in a new tab,
benchmarks/results.md); Streamlit's ``st.metric`` in interactive mode."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

from core.viz import md_text
from pages.components.svg_chart import light


@dataclass(frozen=True)
class Metric:
    """A label (the page's own words) and its value (text from a run is fine: it is escaped), an optional
    hover ``help`` and a ``delta`` line: ``tone`` ``good`` colours it green, ``bad`` red, None grey."""

    label: str
    value: Any
    help: str | None = None
    delta: str | None = None
    tone: Literal["good", "bad"] | None = None


_STYLE = """<style>
.cl-metrics { display: grid; gap: 0.5rem 1.5rem; margin-bottom: 1rem; }
.cl-metric-label { font-size: 0.875rem; opacity: 0.75; }
.cl-metric-label[title] { text-decoration: underline dotted; cursor: help; }
.cl-metric-value { font-size: 1.75rem; line-height: 1.2; overflow-wrap: anywhere; }
.cl-metric-delta { font-size: 0.875rem; display: inline-block; padding: 0 0.4rem; border-radius: 0.5rem;
  background: rgba(128, 128, 128, 0.15); }
.cl-metric-delta.good { color: #177233; background: rgba(33, 195, 84, 0.15); }
.cl-metric-delta.bad { color: #bd4043; background: rgba(255, 43, 43, 0.12); }
</style>"""


def metrics_html(items: Sequence[Metric], columns: int) -> str:
    """``items`` as one escaped HTML grid of ``columns`` columns."""
    cells = []
    for m in items:
        title = f" title='{html.escape(m.help, quote=True)}'" if m.help else ""
        delta = (f"<div class='cl-metric-delta{' ' + m.tone if m.tone else ''}'>{html.escape(str(m.delta))}</div>"
                 if m.delta is not None else "")
        cells.append(f"<div class='cl-metric'><div class='cl-metric-label'{title}>{html.escape(str(m.label))}</div>"
                     f"<div class='cl-metric-value'>{html.escape(str(m.value))}</div>{delta}</div>")
    return (f"{_STYLE}<div class='cl-metrics' style='grid-template-columns: repeat({max(1, columns)}, minmax(0, 1fr))'>"
            + "".join(cells) + "</div>")


def metric_row(items: Sequence[Metric], columns: int | None = None) -> None:
    """``items`` side by side (``columns`` per row; default all in one row)."""
    columns = columns or len(items)
    if light():
        st.html(metrics_html(items, columns))
        return
    for start in range(0, len(items), columns):
        for col, m in zip(st.columns(columns), items[start:start + columns], strict=False):
            col.metric(m.label, md_text(m.value), delta=None if m.delta is None else md_text(m.delta),
                       delta_color={"good": "normal", "bad": "inverse"}.get(m.tone or "", "off"),
                       help=md_text(m.help) if m.help else None)
