"""Tables that stay light: a plain HTML table (``st.table``) for a short table in the light chart mode, the
data grid (``st.dataframe``: sorting, search, its own script of about 1.2 MB to load in a new tab) otherwise."""

from __future__ import annotations

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
          **dataframe: Any) -> None:
    """``data`` (a DataFrame or a list of row dicts) as a plain table when light and short, else
    ``st.dataframe(data, column_config=..., column_order=..., **dataframe)``. Column labels and number formats
    of ``column_config`` apply to both."""
    df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    if not light() or len(df) > MAX_ROWS:
        dataframe.setdefault("hide_index", True)
        st.dataframe(df, column_config=column_config, column_order=column_order, **dataframe)
        return
    config = dict(column_config or {})
    shown = df[[c for c in (column_order or df.columns) if c in df.columns]]
    formats = {c: f for c in shown.columns if (f := _formatter(config.get(c))) is not None}
    for c in shown.columns:  # st.table renders cells as markdown: text from a run is escaped
        if c not in formats and not pd.api.types.is_numeric_dtype(shown[c]):
            formats[c] = lambda v: "—" if v is None or (isinstance(v, float) and pd.isna(v)) else md_text(v)
    labels = {c: cfg["label"] for c, cfg in config.items()
              if isinstance(cfg, Mapping) and cfg.get("label") and c in shown.columns}
    names = [md_text(labels.get(c, c)) for c in shown.columns]
    formats = {names[list(shown.columns).index(c)]: f for c, f in formats.items()}
    shown = shown.set_axis(names, axis="columns")
    st.table(shown.style.format(formats, na_rep="—").hide(axis="index"))
