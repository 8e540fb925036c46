"""Tables that stay light: a plain HTML table (``st.html``, escaped) for a short table in the light chart mode, the
data grid (``st.dataframe``: sorting, search, its own script of about 1.2 MB to load in a new tab) otherwise."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import streamlit as st

from core.viz import md_text
from pages.components.svg_chart import light

MAX_ROWS = 30
"""Longer tables stay data grids (scrolling, sorting) in both modes."""


def _formatter(config: Any) -> Any:
    """A Styler formatter for a column config's printf-like number format (None: the default)."""
    fmt = (config or {}).get("type_config", {}).get("format") if isinstance(config, Mapping) else None
    if not isinstance(fmt, str):
        return None
    if fmt == "percent":
        return lambda v: "" if pd.isna(v) else f"{float(v):.1%}"
    if fmt.startswith("%"):
        return lambda v: "" if pd.isna(v) else (fmt % v if not isinstance(v, str) else v)
    return None


def table(data: Any, *, column_config: Mapping[str, Any] | None = None, column_order: Sequence[str] | None = None,
          caption: str | None = None, **dataframe: Any) -> None:
    """``data`` (a DataFrame or a list of row dicts) as a plain table when light and short, else
    ``st.dataframe(data, column_config=..., column_order=..., **dataframe)``. Column labels and number formats
    of ``column_config`` apply to both. ``caption``: a line of plain text (escaped) above the table (inside it
    when light: still one element)."""
    df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    if not light() or len(df) > MAX_ROWS:
        if caption:
            st.caption(md_text(caption))
        dataframe.setdefault("hide_index", True)
        st.dataframe(df, column_config=column_config, column_order=column_order, **dataframe)
        return
    st.html(html_table(df, column_config=column_config, column_order=column_order, caption=caption))


_STYLE = """<style>
.cl-table { border-collapse: collapse; font-size: 0.875rem; margin-bottom: 1rem; width: 100%; }
.cl-table th, .cl-table td { border-bottom: 1px solid rgba(128, 128, 128, 0.25); padding: 0.25rem 0.5rem;
  text-align: left; vertical-align: top; }
.cl-table th { opacity: 0.7; font-weight: 400; }
.cl-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.cl-table .short { white-space: nowrap; }
.cl-table caption { caption-side: top; text-align: left; font-size: 0.875rem; opacity: 0.75; padding: 0 0 0.25rem 0; }
</style>"""


SHORT = 24
"""Columns whose cells are all this short (characters) do not wrap."""


def _cell(value: Any, fmt: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if fmt is not None:
        return str(fmt(value))
    if isinstance(value, float):  # 4 significant digits, no exponent for large values
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def html_table(df: pd.DataFrame, *, column_config: Mapping[str, Any] | None = None,
               column_order: Sequence[str] | None = None, caption: str | None = None) -> str:
    """``df`` as one escaped HTML table (``st.html``: one element, no per-cell markdown to parse in the
    browser), with the labels and number formats of ``column_config`` and the columns of ``column_order``."""
    config = dict(column_config or {})
    columns = [c for c in (column_order or df.columns) if c in df.columns]
    labels = {c: cfg["label"] for c, cfg in config.items() if isinstance(cfg, Mapping) and cfg.get("label")}
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in columns}
    formats = {c: _formatter(config.get(c)) for c in columns}
    cells = [[_cell(v, formats[c]) for c, v in zip(columns, row, strict=True)]
             for row in df[columns].itertuples(index=False, name=None)]
    # short columns (ids, dates, numbers) stay on one line; long text wraps
    short = [max((len(r[j]) for r in cells), default=0) <= SHORT for j in range(len(columns))]
    attrs = [f" class='{' '.join(k for k, on in (('num', numeric[c]), ('short', short[j])) if on)}'"
             if numeric[c] or short[j] else "" for j, c in enumerate(columns)]
    head = "".join(f"<th{a}>{html.escape(str(labels.get(c, c)))}</th>" for c, a in zip(columns, attrs, strict=True))
    body = "".join("<tr>" + "".join(f"<td{a}>{html.escape(v)}</td>" for v, a in zip(r, attrs, strict=True)) + "</tr>"
                   for r in cells)
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"{_STYLE}<table class='cl-table'>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
